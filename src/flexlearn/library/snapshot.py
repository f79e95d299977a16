"""A read-only view of one library file, for what is derived from it and kept beside it (the tantivy index in
`flexlearn.retrieval.tantivy_index`): its own read-only connection, read transactions, and the few reads such an
index needs (the revision, the entries changed since one, the active rows). The library's SQL stays in this
package; a reader outside it sees rows and numbers only. `SnapshotReader` is the file's `reader.LibraryReader`,
`FileSource` its `reader.LibrarySource` (a server's: `server_snapshot`).

The revision is the log's last `seq`: every change to an entry appends an event in the same transaction, so a
derived copy that records the revision it reflects can catch up by replaying the ids changed since.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flexlearn.errors import LibraryError
from flexlearn.experience import Status
from flexlearn.library import schema
from flexlearn.library.reader import INDEX_ROW_COLUMNS, IndexRow

if TYPE_CHECKING:
    from flexlearn.library.base import LibraryBase

__all__ = ["FileSource", "IndexRow", "SnapshotReader"]

_COLUMNS = INDEX_ROW_COLUMNS
# Only what retrieval may show: quarantined entries join when approved (a logged change).
_ACTIVE = str(Status.ACTIVE)
# Ids per `IN (...)` when reading rows by id; well under SQLite's parameter limit.
_BATCH = 500
# The active rows of some ids, by the id's index. `+status` keeps SQLite off the status index: for five ids or more
# its planner (without statistics) chose that one, which reads every active entry (40-50 ms a catch-up at 100k
# entries, for each writer after each write of another: concurrent writers' searches took 200 ms).
_ROWS_OF_IDS = f"SELECT {_COLUMNS} FROM experiences WHERE id IN ({{marks}}) AND +status = ?"


class LogReads:
    """The reads of the log and entries that a file's and a server's snapshot reader share, in the library's
    portable SQL (`?` placeholders): each reader gives `_execute` over its own read-only connection."""

    def _execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        raise NotImplementedError

    def stamp(self, revision: int) -> float | None:
        """What identifies the event at `revision` (its time), or None when there is none: a copy built from
        another library at the same revision (one deleted and made again) has another stamp."""
        row = self._execute("SELECT created_at FROM events WHERE seq = ?", (revision,)).fetchone()
        return None if row is None else float(row[0])

    def changed_since(self, seq: int) -> list[str]:
        """The ids of the entries changed (added, edited, deleted, approved...) after event `seq`, each once."""
        return [
            r[0]
            for r in self._execute(
                "SELECT DISTINCT experience_id FROM events WHERE seq > ? AND experience_id IS NOT NULL", (seq,)
            )
        ]

    def last_changes_since(self, seq: int) -> dict[str, int]:
        """As `changed_since`, with the `seq` of each id's last change."""
        return {
            r[0]: int(r[1])
            for r in self._execute(
                "SELECT experience_id, max(seq) FROM events WHERE seq > ? AND experience_id IS NOT NULL "
                "GROUP BY experience_id",
                (seq,),
            )
        }

    def count(self) -> int:
        """How many entries the library holds, of every status."""
        return int(self._execute("SELECT count(*) FROM experiences").fetchone()[0])

    def counts_by_zone_level(self) -> dict[tuple[str, str], int]:
        """How many active entries each (zone, level) holds; pairs with none are left out."""
        return {
            (zone, level): int(n)
            for zone, level, n in self._execute(
                "SELECT zone, level, count(*) FROM experiences WHERE status = ? GROUP BY 1, 2", (_ACTIVE,)
            )
        }


class SnapshotReader(LogReads):
    """A read-only connection to the library file at `path` (`mode=ro`; it never writes, not even to migrate),
    usable from any thread, one at a time.

    Each read on its own sees the file as last committed. Reads that must agree with each other (the rows
    indexed and the revision recorded with them) go inside one `snapshot()` block: a WAL read transaction, which
    sees the file as it was at the block's first read, whatever other connections commit meanwhile.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(
            f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(schema.BUSY_TIMEOUT_S * 1000)}")

    def _execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        return self._conn.execute(sql, params)

    @classmethod
    def of(cls, library: LibraryBase) -> SnapshotReader:
        """A reader of the file `library` is open on, with a connection of its own (so its read transactions
        never meet the library's writes on one connection). LibraryError for a library on a server, which has no
        file to keep an index beside."""
        if library.path is None:
            raise LibraryError(f"{library.location} is not a library file: it has no file to read a snapshot of")
        return cls(library.path)

    def identity(self) -> str:
        """The file's resolved path: what names the library for what is derived from it."""
        return str(self.path.resolve())

    # -- the read transaction -----------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read in the block sees one moment of the file (`BEGIN` ... `COMMIT`). A block inside another
        joins it."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    # -- the log ------------------------------------------------------------------------------------------

    def revision(self) -> int:
        """The file's revision: the last event's `seq`, 0 for a library never changed."""
        return self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]

    # -- the entries --------------------------------------------------------------------------------------

    def active_rows(self, ids: Sequence[str] | None = None) -> Iterator[IndexRow]:
        """The active entries (`IndexRow`s), all of them or those of `ids` (ids not there, or quarantined, are
        left out; `[]` gives none), read lazily. Inside a `snapshot()`, consume them before it ends."""
        if ids is None:
            yield from self._conn.execute(f"SELECT {_COLUMNS} FROM experiences WHERE status = ?", (_ACTIVE,))
            return
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            yield from self._conn.execute(_ROWS_OF_IDS.format(marks=", ".join("?" * len(batch))), [*batch, _ACTIVE])

    # -- closing ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        self._conn.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class FileSource:
    """The library file at `path` as a `reader.LibrarySource`: each `reader()` is a `SnapshotReader` of it."""

    def __init__(self, path: str | Path) -> None:
        self._file = Path(path)
        self.path: Path | None = self._file
        self.location = str(path)

    @property
    def key(self) -> tuple[object, ...]:
        """The file's resolved path and inode: a library deleted and made again at the same path is another."""
        stat = os.stat(self._file)
        return ("file", str(self._file.resolve()), stat.st_dev, stat.st_ino)

    def reader(self) -> SnapshotReader:
        return SnapshotReader(self._file)
