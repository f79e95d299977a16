"""What every part of the library stands on: one SQLite connection, the file's path, and the transactions
all writes go through. `Library` is composed of mixins built on this class, one per concern."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flexlearn.errors import LibraryError


class LibraryBase:
    """A connection to a library file. Not used on its own: see `flexlearn.library.Library`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self.path = path
        self._depth = 0  # how many transaction() blocks are open; >0 means inside BEGIN IMMEDIATE
        # Opened read-only (`Library.open(read_only=True)`, or where the file or its folder cannot be written):
        # every write raises LibraryError, and readers skip the usage counters they would otherwise update.
        self.read_only = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically: commit at the end, roll back if the block raises.

        The outermost block takes the write lock at once (`BEGIN IMMEDIATE`), so a concurrent writer waits
        for it instead of failing half-way. A nested block joins the outer one through a savepoint: if it
        raises, only its own writes are undone, and the outer block decides about the rest.
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
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise LibraryError(f"cannot write to {self.path}: {e}") from e
        self._depth = 1
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as e:
            # SQLite ends the transaction itself after some errors (disk full...); a failed COMMIT does not.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError):
                # A read-only file, a full disk, a lock held too long: BEGIN IMMEDIATE can succeed on a file
                # that then refuses the first write.
                raise LibraryError(f"cannot write to {self.path}: {e}") from e
            raise
        finally:
            self._depth = 0

    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the library file, as far as readers allow (PASSIVE: never
        waits). After it, the file alone holds those writes: a lost or removed -wal cannot take them along. Inside a
        transaction it does nothing: the writes are not committed yet."""
        if not self._conn.in_transaction:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read in one moment in time: every query in the block sees the file as it was at the block's first
        read, whatever other processes commit meanwhile (a WAL read transaction). Inside a write transaction
        the block simply joins it."""
        if self._depth or self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN DEFERRED")
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def check_writable(self) -> None:
        """Raise LibraryError now if the file cannot be written (read-only file or folder, an immutable file),
        rather than after an hour of model calls. Writes nothing: the probe write is rolled back."""
        try:
            with self.transaction():
                self._conn.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
                raise _Probe
        except _Probe:
            pass


class _Probe(Exception):
    """Rolls back `check_writable`'s probe write."""
