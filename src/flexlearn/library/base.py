"""What every part of the library stands on: one connection to its store (a `backend.Database`: an SQLite file or
a PostgreSQL server), where it is, and the transactions all writes go through. `Library` is composed of mixins
built on this class, one per concern; none of them knows which backend it runs on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flexlearn.errors import LibraryError
from flexlearn.library.backend import Database

if TYPE_CHECKING:
    from flexlearn.library.backend.pgvector import PgVectorStore


class LibraryBase:
    """A connection to a library. Not used on its own: see `flexlearn.library.Library`."""

    def __init__(self, db: Database) -> None:
        self._conn = db
        # The library file, or None for a library on a server; `location` is what messages call it either way.
        self.path: Path | None = db.path
        self.location: str = db.location
        self._depth = 0  # how many transaction() blocks are open; >0 means inside the write transaction
        # Opened read-only (`Library.open(read_only=True)`, or where the file or its folder cannot be written):
        # every write raises LibraryError, and readers skip the usage counters they would otherwise update.
        self.read_only = db.read_only

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically: commit at the end, roll back if the block raises.

        The outermost block takes the library's writer lock at once (`Database.begin(write=True)`: `BEGIN
        IMMEDIATE` in a file, an advisory lock on a server), so a concurrent writer, in this process or on another
        host, waits for it instead of failing half-way or deciding on what is about to change. A nested block joins
        the outer one through a savepoint: if it raises, only its own writes are undone, and the outer block decides
        about the rest.
        """
        if self._depth:
            name = f"sp{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                raise
            finally:
                self._depth -= 1
                self._conn.execute(f"RELEASE {name}")
            return
        try:
            self._conn.begin(write=True)
        except Exception as e:
            if self._conn.write_error(e):
                raise LibraryError(f"cannot write to {self.location}: {e}") from e
            raise
        self._depth = 1
        try:
            yield
            self._conn.commit()
        except BaseException as e:
            # SQLite ends the transaction itself after some errors (disk full...); a failed COMMIT does not.
            if self._conn.in_transaction:
                self._conn.rollback()
            if self._conn.write_error(e):
                raise LibraryError(f"cannot write to {self.location}: {e}") from e
            raise
        finally:
            self._depth = 0

    def checkpoint(self) -> None:
        """Make what is committed durable in the store itself, as far as readers allow and without waiting: a file
        copies its write-ahead log into itself, so a lost or removed -wal cannot take those writes along (a server
        has nothing to do). Inside a transaction it does nothing: the writes are not committed yet."""
        self._conn.checkpoint()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read in one moment in time: every query in the block sees the library as it was at the block's first
        read, whatever other processes commit meanwhile (a WAL read transaction; a repeatable-read one on a
        server). Inside a write transaction the block simply joins it."""
        if self._depth or self._conn.in_transaction:
            yield
            return
        self._conn.begin(write=False)
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            if self._conn.in_transaction:
                self._conn.commit()

    def vector_store(self) -> PgVectorStore | None:
        """Dense retrieval's embeddings where the store keeps them itself, on this connection (a PostgreSQL
        database, with pgvector: `retrieval.pgvector_index` keeps them current); None for a file, whose vector
        index lives in a folder beside it. The vector index reads and writes it on a connection of its own
        (`Library.reopen`), never inside the caller's transactions."""
        return self._conn.vector_store()

    def check_writable(self) -> None:
        """Raise LibraryError now if the library cannot be written (read-only file or folder, an immutable file, a
        server that refuses), rather than after an hour of model calls. Writes nothing: the probe write is rolled
        back."""
        try:
            with self.transaction():
                self._conn.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
                raise _Probe
        except _Probe:
            pass


class _Probe(Exception):
    """Rolls back `check_writable`'s probe write."""
