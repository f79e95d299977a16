"""Embeddings kept in a PostgreSQL library's own database with the pgvector extension: the storage half of dense
retrieval on a server (`retrieval.pgvector_index` keeps it in step with the library).

Two tables beside the library's, in its schema, made on first use (they are derived, like the index folders beside
a file, and not part of the library's schema versions: a server without pgvector holds a complete library):

- `experience_vectors`: one row per active entry and embedding model: the entry's id, zone and level, its embedding
  (`vector(DIM)`), the model's id and the library revision the row was embedded at. The key is (model, id), and
  rows are written with `INSERT ... ON CONFLICT DO UPDATE`, so an entry never has two rows of one model.
- `experience_vector_state`: per model, the revision the rows reflect (every change logged up to it is in them), the
  timestamp of the event at that revision (a library made again in the same schema is not mistaken for the old
  one) and the dimension.

Writers of the index take turns on an advisory lock of their own (`lock_key(schema, "vectors")`), held for one
transaction: one process's rows and state are committed together or not at all, and a second process that waited
sees them. The library's writers never wait for it. The extension is created in the database when the server has it
and the user may (`CREATE EXTENSION vector`, under a lock of its own: two processes creating it at once would
collide), in the `public` schema where there is one; its type and operators are named with the schema it lives in, so
a library in any schema of the database finds them.

Search is exact: the inner product (`<#>`) of the query with every row of the zone and level asked for, best
first, ties to the smaller id. The embeddings are of unit length, so that is their cosine similarity, and it is
the number the in-process index computes for a file (a text without tokens embeds as zeros and scores 0 in both,
where `<=>` would give NaN). Why no HNSW index: docs/retrieval.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from flexlearn.errors import LibraryError

if TYPE_CHECKING:
    from flexlearn.library.backend.postgres import PostgresDatabase

VECTORS = "experience_vectors"
STATE = "experience_vector_state"
EXTENSION = "vector"
# Rows written per statement.
CHUNK = 500
# How long a sync waits for another process's sync of the same index (a rebuild of a big library embeds every
# entry first) before giving up with a LibraryError.
LOCK_WAIT_S = 300


class VectorWriteRefused(LibraryError):
    """The server refused a write to the vector tables (a read-only connection or user, a standby, a full disk);
    what was there stays as it was."""


@dataclass(frozen=True)
class VectorState:
    """What the rows of one model reflect: the library `revision`, the `stamp` (created_at) of the event at that
    revision (None at revision 0) and the embeddings' dimension."""

    revision: int
    stamp: float | None
    dim: int


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=8)
def _template(dim: int) -> str:
    return "[" + ",".join(["%.9g"] * dim) + "]"


def literal(vector: np.ndarray) -> str:
    """`vector` as pgvector's text form, each float32 written with 9 significant digits (it reads back exactly)."""
    return _template(len(vector)) % tuple(vector.tolist())


class PgVectorStore:
    """The vector tables of the library on `db`'s connection. Call `open` first; writes go inside `syncing()`."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._type = ""  # the vector type, qualified by its schema, once `open` found the extension
        self._ip = ""  # the inner-product operator, qualified the same way

    # -- the extension and the tables ---------------------------------------------------------------------

    def open(self, dim: int, *, create: bool) -> str | None:
        """Find the vector extension and the tables, creating what is missing where `create` allows; None when the
        store is usable for embeddings of `dim` dimensions, else why not, in a sentence."""
        schema = self._extension_schema()
        if schema is None:
            available = self._db.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = ?", (EXTENSION,)
            ).fetchone()
            if available is None:
                return "the server has no pgvector (its 'vector' extension is not installed)"
            if not create:
                return "pgvector is installed on the server but not created in this database, which is open read-only"
            reason = self._create_extension()
            if reason is not None:
                return reason
            schema = self._extension_schema()
            if schema is None:  # dropped again at once
                return "the 'vector' extension could not be created in this database"
        self._type = f"{_quoted(schema)}.vector"
        self._ip = f"OPERATOR({_quoted(schema)}.<#>)"
        found = self._dimension()
        if found == dim:
            return None
        if not create:
            if found is None:
                return "this database holds no vector index yet, and the library is open read-only"
            return f"the vector index holds {found}-dimensional embeddings, not {dim}, and the library is read-only"
        try:
            with self.syncing():
                if self._dimension() != dim:  # another process may have made them while we waited
                    self._make_tables(dim)
        except VectorWriteRefused as e:
            return f"cannot create the vector index's tables ({e})"
        return None

    def _extension_schema(self) -> str | None:
        row = self._db.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = ?",
            (EXTENSION,),
        ).fetchone()
        return None if row is None else str(row[0])

    def _create_extension(self) -> str | None:
        import psycopg

        db = self._db
        # Extensions are per database, as advisory locks are: one key serialises every library of the database.
        db.execute(f"BEGIN; SELECT pg_advisory_xact_lock({self._lock('vector-extension')})")
        try:
            # In `public` where there is one, the conventional home of extensions, not in the library's own
            # schema: dropping a library's schema must not take another library's vector type with it.
            public = db.execute("SELECT to_regnamespace('public') IS NOT NULL").fetchone()[0]
            db.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}" + (" SCHEMA public" if public else ""))
            db.commit()
        except Exception as e:
            db.rollback()
            if isinstance(e, psycopg.errors.InsufficientPrivilege):
                return (
                    "pgvector is installed on the server but not created in this database, and this user may not "
                    f"create it ({_first_line(e)}): a superuser can run CREATE EXTENSION vector in it"
                )
            if isinstance(e, psycopg.Error) and not isinstance(e, psycopg.OperationalError):
                return f"the 'vector' extension could not be created in this database ({_first_line(e)})"
            raise
        return None

    def _dimension(self) -> int | None:
        """The dimension of the `embedding` column, or None when the tables are not there (or not both)."""
        row = self._db.execute(
            "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass(?) AND a.attname = 'embedding'"
            " AND to_regclass(?) IS NOT NULL",
            (f"{_quoted(self._db.schema_name)}.{VECTORS}", f"{_quoted(self._db.schema_name)}.{STATE}"),
        ).fetchone()
        return None if row is None else int(row[0])

    def _make_tables(self, dim: int) -> None:
        # What is there (of another dimension, or half) is derived: dropped and made again.
        self._db.execute(f"DROP TABLE IF EXISTS {VECTORS}, {STATE}")
        self._db.execute(
            f"""CREATE TABLE {VECTORS} (
                model TEXT NOT NULL,
                id TEXT NOT NULL,
                zone TEXT NOT NULL,
                level TEXT NOT NULL,
                revision BIGINT NOT NULL,
                embedding {self._type}({int(dim)}) NOT NULL,
                PRIMARY KEY (model, id))"""
        )
        self._db.execute(f"CREATE INDEX {VECTORS}_zone_level ON {VECTORS}(model, zone, level)")
        self._db.execute(
            f"""CREATE TABLE {STATE} (
                model TEXT PRIMARY KEY,
                dim INTEGER NOT NULL,
                revision BIGINT NOT NULL,
                stamp DOUBLE PRECISION)"""
        )

    def _lock(self, purpose: str) -> int:
        from flexlearn.library.backend.postgres import lock_key

        return lock_key(self._db.schema_name, purpose)

    # -- writing ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def syncing(self) -> Iterator[None]:
        """One transaction holding the index's lock: rows and state written inside commit together. Reads inside
        see everything committed before each statement (the library's writers serialise on their own lock, so its
        log grows in commit order). A write the server refuses is `VectorWriteRefused`."""
        import psycopg

        db = self._db
        db.execute(
            f"BEGIN; SET LOCAL lock_timeout = '{LOCK_WAIT_S}s'; SELECT pg_advisory_xact_lock({self._lock('vectors')})"
        )
        try:
            yield
            db.commit()
        except BaseException as e:
            if db.in_transaction:
                db.rollback()
            if isinstance(e, psycopg.errors.LockNotAvailable):
                raise LibraryError(
                    f"the vector index of {db.location} has been locked by another process's update for over "
                    f"{LOCK_WAIT_S} s"
                ) from e
            if isinstance(e, Exception) and db.write_error(e):  # a lost server is ServerLost already
                raise VectorWriteRefused(_first_line(e)) from e
            raise

    def state(self, model: str) -> VectorState | None:
        row = self._db.execute(f"SELECT revision, stamp, dim FROM {STATE} WHERE model = ?", (model,)).fetchone()
        return None if row is None else VectorState(int(row[0]), row[1], int(row[2]))

    def set_state(self, model: str, state: VectorState) -> None:
        self._db.execute(
            f"INSERT INTO {STATE}(model, dim, revision, stamp) VALUES (?, ?, ?, ?) ON CONFLICT(model) DO UPDATE"
            " SET dim = excluded.dim, revision = excluded.revision, stamp = excluded.stamp",
            (model, state.dim, state.revision, state.stamp),
        )

    def clear(self, model: str) -> None:
        """Remove every row of `model`."""
        self._db.execute(f"DELETE FROM {VECTORS} WHERE model = ?", (model,))

    def remove(self, model: str, ids: Sequence[str]) -> None:
        if ids:
            self._db.execute(f"DELETE FROM {VECTORS} WHERE model = ? AND id = ANY(?)", (model, list(ids)))

    def put(self, model: str, rows: Sequence[tuple[str, str, str]], vectors: np.ndarray, *, revision: int) -> None:
        """Write one row per (id, zone, level) of `rows` with its line of `vectors`, replacing a row of the same
        model and id."""
        for start in range(0, len(rows), CHUNK):
            part = rows[start : start + CHUNK]
            self._db.execute(
                f"INSERT INTO {VECTORS}(model, id, zone, level, revision, embedding)"
                f" SELECT ?, u.id, u.zone, u.level, ?, CAST(u.embedding AS {self._type})"
                " FROM unnest(CAST(? AS text[]), CAST(? AS text[]), CAST(? AS text[]), CAST(? AS text[]))"
                " AS u(id, zone, level, embedding)"
                " ON CONFLICT(model, id) DO UPDATE SET zone = excluded.zone, level = excluded.level,"
                " revision = excluded.revision, embedding = excluded.embedding",
                (
                    model,
                    revision,
                    [r[0] for r in part],
                    [r[1] for r in part],
                    [r[2] for r in part],
                    [literal(v) for v in vectors[start : start + CHUNK]],
                ),
            )

    # -- reading ------------------------------------------------------------------------------------------

    def count(self, model: str) -> int:
        return int(self._db.execute(f"SELECT count(*) FROM {VECTORS} WHERE model = ?", (model,)).fetchone()[0])

    def search(
        self, model: str, vector: np.ndarray, k: int, zone: str | None = None, level: str | None = None
    ) -> list[tuple[str, float]]:
        """The ids of the `k` rows of `model` (of `zone` and `level` where given) whose embedding has the largest
        inner product with `vector`, best first, with it; ties go to the smaller id."""
        where, params = "", []
        if zone is not None:
            where += " AND zone = ?"
            params.append(zone)
        if level is not None:
            where += " AND level = ?"
            params.append(level)
        rows = self._db.execute(
            f"SELECT id, -(embedding {self._ip} q.v) AS score FROM {VECTORS}, (SELECT CAST(? AS {self._type}) AS v) q"
            f" WHERE model = ?{where} ORDER BY embedding {self._ip} q.v, id LIMIT ?",
            [literal(vector), model, *params, k],
        )
        return [(str(r[0]), float(r[1])) for r in rows]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
