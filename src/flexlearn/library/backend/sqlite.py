"""A library in one SQLite file: the embedded default.

The file is safe to share between processes on one host: WAL, a busy timeout, and `BEGIN IMMEDIATE` for every
write, so writers take turns. Its tables, FTS5 index and migrations are in `flexlearn.library.schema`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flexlearn.errors import LibraryError
from flexlearn.experience import Status
from flexlearn.library import schema
from flexlearn.library.rows import ENTRY_COLUMNS
from flexlearn.library.search import fts_match


def _not_a_library(location: str, error: sqlite3.DatabaseError) -> str:
    """Why an SQLite error at opening refuses the file: a damaged library (its pages malformed), or a file that is
    not a library at all."""
    if "malformed" in str(error):
        return f"the library file is damaged ({error}): {location}; restore it from a copy or an export"
    return f"{location} is not a flexlearn library (not an SQLite database: {error})"


def _prefixed(columns: str, prefix: str) -> str:
    return ", ".join(f"{prefix}{c.strip()}" for c in columns.split(","))


class SqliteDatabase:
    """A connection to a library file (see `flexlearn.library.backend.Database`)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only: bool = False) -> None:
        conn.row_factory = sqlite3.Row
        self.conn = conn
        self.path: Path | None = path
        self.location = str(path)
        self.read_only = read_only
        # The driver's own methods, not wrappers: the library's hot paths pay nothing for the seam.
        self.execute = conn.execute
        self.executemany = conn.executemany

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def connect(cls, path: Path, *, create: bool) -> SqliteDatabase:
        """The file at `path`, created (empty) unless `create=False`; its folder must exist."""
        if not path.exists():
            if not create:
                raise LibraryError(f"no library at {path}")
            if not path.parent.is_dir():
                raise LibraryError(f"cannot create library {path}: folder {path.parent} does not exist")
        elif path.is_dir():
            raise LibraryError(f"{path} is a folder, not a library file")
        try:
            # flexlearn's synchronous API runs the loops on its own thread (flexlearn._sync) while the caller,
            # which opened the library, waits: one thread at a time, so sharing the connection is safe.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(schema.BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as e:
            raise LibraryError(f"cannot open library {path}: {e}") from e
        return cls(conn, path)

    @classmethod
    def connect_read_only(cls, path: Path) -> SqliteDatabase:
        """The file at `path`, opened without writing anything, not even the side files SQLite keeps beside a file
        in WAL mode: read-only where those can be made, else as immutable (a folder nobody can write in has no
        writer to race with)."""
        if not path.exists():
            raise LibraryError(f"no library at {path}")
        if path.is_dir():
            raise LibraryError(f"{path} is a folder, not a library file")
        target = urllib.parse.quote(str(path.resolve()))
        error: sqlite3.Error | None = None
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"file:{target}?{flags}", uri=True, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(schema.BUSY_TIMEOUT_S * 1000)}")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError as e:
                conn.close()
                error = e
                continue
            except sqlite3.DatabaseError as e:
                conn.close()
                raise LibraryError(_not_a_library(str(path), e)) from e
            return cls(conn, path, read_only=True)
        raise LibraryError(f"cannot open library {path} read-only: {error}")

    def opening_error(self, exc: BaseException) -> LibraryError | None:
        if isinstance(exc, sqlite3.OperationalError):
            return LibraryError(f"cannot open library {self.location}: {exc}")
        if isinstance(exc, sqlite3.DatabaseError):
            return LibraryError(_not_a_library(self.location, exc))
        return None

    def stored_version(self) -> int:
        return schema.stored_version(self.conn, self.location)

    def prepare(self) -> None:
        schema.configure(self.conn)

    def has_index(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
        return row is not None

    def upgrade(self, version: int, target: int) -> None:
        schema.upgrade(self.conn, version, target)

    # -- transactions -------------------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def begin(self, *, write: bool) -> None:
        # IMMEDIATE takes the file's write lock at once, so a concurrent writer waits (busy timeout) instead of
        # failing half-way; DEFERRED reads one WAL snapshot from its first read on.
        self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def write_error(self, exc: BaseException) -> bool:
        # A read-only file, a full disk, a lock held too long: BEGIN IMMEDIATE can succeed on a file that then
        # refuses the first write.
        return isinstance(exc, sqlite3.OperationalError)

    # -- search -------------------------------------------------------------------------------------------

    def search(self, tokens: list[str], where: str, params: list[Any], k: int) -> Iterable[sqlite3.Row]:
        # Title words weigh most (a title is the lesson in brief); examples least (they quote raw attempts).
        return self.conn.execute(
            f"SELECT {_prefixed(ENTRY_COLUMNS, 'e.')}, -bm25(experiences_fts, 2.0, 1.0, 0.5) AS score"
            " FROM experiences_fts JOIN experiences e ON e.seq = experiences_fts.rowid"
            f" WHERE experiences_fts MATCH ? AND e.status = ?{where} ORDER BY score DESC, e.seq LIMIT ?",
            [fts_match(tokens), str(Status.ACTIVE), *params, k],
        )

    def vector_store(self) -> None:
        """None: a file keeps no embeddings; dense retrieval's index lives in a folder beside it
        (`retrieval.dense.VectorIndex`)."""
        return None

    def restart_sequences(self) -> None:
        """Nothing to do: an `INTEGER PRIMARY KEY` takes the largest key plus one."""

    # -- the file -----------------------------------------------------------------------------------------

    def checkpoint(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def close(self) -> None:
        # What the write-ahead log holds is copied into the file first, so the `.flexlib` alone can be copied or
        # handed on (SQLite does that by itself only when the last connection closes, and the retrieval index
        # keeps a read connection of its own).
        with contextlib.suppress(sqlite3.Error):  # closed already, or a read-only file: nothing to copy
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
