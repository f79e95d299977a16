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
        except BaseException:
            # SQLite ends the transaction itself after some errors (disk full...); a failed COMMIT does not.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0
