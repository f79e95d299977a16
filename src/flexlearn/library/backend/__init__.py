"""Where a library is stored: the seam between `Library` and its database. Two implementations of one
`Database` interface: `sqlite.SqliteDatabase`, a file (the embedded default), and `postgres.PostgresDatabase`, a
PostgreSQL server (`postgresql://...`), which several hosts can write at once.

The library's mixins hold one portable SQL text per query (`?` placeholders, standard upserts, no engine
functions) and run it through `Database.execute`; what differs between the engines lives here and only here:
connecting and recognising a library, the transactions and the writer lock that keeps updater decisions serialised
(SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction holding `pg_advisory_xact_lock`, the database's own lock,
so writers on several hosts take turns), the tables and their migrations, lexical search (FTS5 and BM25;
a weighted tsvector and `ts_rank`), where dense retrieval's embeddings are kept (`Database.vector_store`: in the
database itself with pgvector, `pgvector.PgVectorStore`; beside the file, by the retrieval layer, for SQLite), and
what the file has that a server does not (its path, the WAL checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flexlearn.errors import LibraryError

if TYPE_CHECKING:
    from flexlearn.library.backend.pgvector import PgVectorStore

# What a query's rows support: `row["column"]`, `row[0]`, `dict(row)`, `tuple(row)` (sqlite3.Row, and
# `postgres.Row`).
Row = Any

URL_SCHEMES = ("postgresql://", "postgres://")


class ServerLost(LibraryError):
    """The library's server went away in the middle of a command (stopped, restarted, unreachable, the connection
    ended): what was committed before is kept, what was not the server rolled back."""


class Cursor(Protocol):
    """The result of `Database.execute`."""

    rowcount: int

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class Database(Protocol):
    """One connection to a library's store, used by one thread at a time. Opened by `connect`."""

    # The library file, or None for a library on a server.
    path: Path | None
    # What messages call the library: the file's path as given, or the URL without its password.
    location: str
    # Opened without the right to write (`Library.open(read_only=True)`).
    read_only: bool

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        """Run one statement of portable SQL with `?` placeholders."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement once per parameter row."""
        ...

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection."""
        ...

    def begin(self, *, write: bool) -> None:
        """Open a transaction. `write=True` takes the library's writer lock first (waiting for another writer to
        finish, up to a timeout): writers take turns, so every read in the transaction sees all that was committed
        before it, and decisions taken on those reads stay true until it commits. `write=False` opens a read
        snapshot: every read sees one moment of the library."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def stored_version(self) -> int:
        """The schema version the library is at, 0 for an empty store; LibraryError for a database that holds
        something else."""
        ...

    def prepare(self) -> None:
        """Set the connection up for writing, once the store is recognised as a library (SQLite: WAL)."""
        ...

    def has_index(self, name: str) -> bool:
        """Whether the library holds an index of this name (derived indexes are made on first use)."""
        ...

    def upgrade(self, version: int, target: int) -> None:
        """Apply the migrations from `version` to `target` and record the new version, inside the caller's write
        transaction."""
        ...

    def search(self, tokens: list[str], where: str, params: list[Any], k: int) -> Iterable[Row]:
        """The `k` active entries that best match any of `tokens` (`search.query_tokens`), best first: the columns
        of `rows.ENTRY_COLUMNS` and a `score` (higher is better, comparable within one answer). `where` holds
        extra conditions on the entry `e` (`rows.filters(prefix="e.")`) and `params` their parameters."""
        ...

    def vector_store(self) -> PgVectorStore | None:
        """Where the store keeps dense retrieval's embeddings itself, on this connection: a PostgreSQL database keeps
        them in tables of its own (pgvector); None for a file, whose vector index the retrieval layer keeps in a
        folder beside it."""
        ...

    def restart_sequences(self) -> None:
        """After rows were inserted with their own keys (`seq`), make the next generated key follow the largest."""
        ...

    def checkpoint(self) -> None:
        """Make committed writes durable in the store itself where it keeps them aside (SQLite's WAL), never
        waiting; a no-op inside a transaction and for a server."""
        ...

    def opening_error(self, exc: BaseException) -> LibraryError | None:
        """The LibraryError for a driver error raised while the library was being recognised and migrated (a
        damaged file, a lost server), or None for an error that is not the driver's."""
        ...

    def write_error(self, exc: BaseException) -> bool:
        """Whether `exc` is the store refusing a write (read-only, full, a lock held too long, a lost
        connection): `LibraryBase.transaction` turns it into a LibraryError."""
        ...

    def close(self) -> None:
        """Close the connection, leaving the store complete in itself. Safe to call twice."""
        ...


def is_url(target: str | Path) -> bool:
    """Whether `target` names a library on a PostgreSQL server rather than a file."""
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def location_of(target: str | Path) -> str:
    """What messages call the library at `target` before it is opened: the path as given, or the URL without its
    password (as `Database.location` will)."""
    if is_url(target):
        from flexlearn.library.backend.postgres import redact

        return redact(str(target))
    return str(target)


def connect(target: str | Path, *, create: bool, read_only: bool) -> Database:
    """A connection to the library at `target`, a path or a `postgresql://` URL, checked as far as connecting
    can without writing (a file that is not a database is refused here; its schema is read by the caller).
    LibraryError saying why when it cannot be opened."""
    if is_url(target):
        from flexlearn.library.backend.postgres import PostgresDatabase

        return PostgresDatabase.connect(str(target), read_only=read_only)
    from flexlearn.library.backend.sqlite import SqliteDatabase

    path = Path(target)
    return SqliteDatabase.connect_read_only(path) if read_only else SqliteDatabase.connect(path, create=create)
