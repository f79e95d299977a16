"""The seam between a library and what is derived from it and kept elsewhere (the tantivy index of
`flexlearn.retrieval.tantivy_index`): a `LibraryReader` reads one library through a read-only connection of its
own, and a `LibrarySource` opens such readers. Two implementations: `snapshot.SnapshotReader` for a file and
`server_snapshot.ServerSnapshotReader` for a PostgreSQL server. The library's SQL stays in this package; a reader
outside it sees rows and numbers only.

The revision is the log's last `seq`: every change to an entry appends an event in the same transaction, so a
derived copy that records the revision it reflects can catch up by replaying the ids changed since.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from flexlearn.errors import LibraryError

if TYPE_CHECKING:
    from flexlearn.library.store import Library


class LibraryReplacedError(LibraryError):
    """The library a reader was opened for was dropped and made again at the same place (a server library's
    tables are new): what is derived from the old one must not be carried over to the new one."""


# One row as `active_rows` gives it: id, zone, level, title, content, examples (the JSON list, as stored).
IndexRow = tuple[str, str, str, str, str, str]
# The columns that select an `IndexRow`, in its order.
INDEX_ROW_COLUMNS = "id, zone, level, title, content, examples"


@runtime_checkable
class LibraryReader(Protocol):
    """A read-only connection to one library, usable from any thread, one at a time.

    Each read on its own sees the library as last committed. Reads that must agree with each other (the rows
    indexed and the revision recorded with them) go inside one `snapshot()` block, which sees the library as it
    was at the block's first read, whatever other connections commit meanwhile.
    """

    def snapshot(self) -> AbstractContextManager[None]:
        """A read transaction: every read in the block sees one moment of the library. A block inside another
        joins it."""
        ...

    def identity(self) -> str:
        """What names the library wherever it is read from, for naming what is derived from it: a file's resolved
        path; a server's system identifier (or address), database and schema. Never a password."""
        ...

    def revision(self) -> int:
        """The library's revision: the last event's `seq`, 0 for a library never changed."""
        ...

    def stamp(self, revision: int) -> float | None:
        """What identifies the event at `revision` (its time), or None when there is none: a copy built from
        another library at the same revision (a library deleted and made again) has another stamp."""
        ...

    def changed_since(self, seq: int) -> list[str]:
        """The ids of the entries changed (added, edited, deleted, approved...) after event `seq`, each once."""
        ...

    def last_changes_since(self, seq: int) -> dict[str, int]:
        """As `changed_since`, with the `seq` of each id's last change."""
        ...

    def active_rows(self, ids: Sequence[str] | None = None) -> Iterator[IndexRow]:
        """The active entries (`IndexRow`s), all of them or those of `ids` (ids not there, or quarantined, are
        left out; `[]` gives none), read lazily. Inside a `snapshot()`, consume them before it ends."""
        ...

    def count(self) -> int:
        """How many entries the library holds, of every status."""
        ...

    def counts_by_zone_level(self) -> dict[tuple[str, str], int]:
        """How many active entries each (zone, level) holds; pairs with none are left out."""
        ...

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        ...

    def __enter__(self) -> LibraryReader: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class LibrarySource(Protocol):
    """One library as something derived from it sees it: where it is, and readers of it on connections of their
    own (one for the derived index's life, more for background work on other threads)."""

    # What messages call the library: a file's path, or a URL without its password.
    location: str
    # The library file, or None for a library on a server.
    path: Path | None

    @property
    def key(self) -> tuple[object, ...]:
        """What tells this library apart from every other in this process, one made again at the same place
        included (a file's inode; a server library's instance)."""
        ...

    def reader(self) -> LibraryReader:
        """A new reader of the library, on a connection of its own."""
        ...


def source_of(library: Library) -> LibrarySource:
    """The source of `library`'s readers: its file (`snapshot.FileSource`), or its server
    (`server_snapshot.ServerSource`, which connects as `library` did, with its credentials)."""
    if library.path is not None:
        from flexlearn.library.snapshot import FileSource

        return FileSource(library.path)
    from flexlearn.library.server_snapshot import ServerSource

    return ServerSource.of(library)
