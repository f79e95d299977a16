"""The retrieval seam: every search of the library for guidance or for the updater's neighbours goes through a
`Retriever`, so a different index or ranking plugs in without touching the loops.

An index-backed retriever (`TantivyRetriever`, a tantivy index kept beside the library file) fits this
protocol as it is. The library stays the source of truth: every change to an experience is logged in the same
transaction as the change, so `Library.revision()` tells such a retriever whether its index is current (it
stores the revision it was built at) and `Library.events(since_seq=...)` lists the changes it missed. It checks
before answering a query and catches up, or rebuilds when the index file is missing or unreadable. Reading the
revision from the file rather than hooking this process's writes keeps the index right when several processes
learn into one library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flexlearn.experience import Experience, Level, Zone


@dataclass
class Hit:
    """One retrieved experience and its score: higher is better, comparable only within one answer."""

    experience: Experience
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Ranks the experiences of one library against a query."""

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """The `k` experiences that best match `query`, best first, optionally of one zone and/or level.
        Any text is a valid query; one with nothing to search for gives []. Usage counters are not touched."""
        ...

    def neighbours(
        self, exp: Experience, *, k: int = 5, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """The `k` stored experiences most like `exp`, best first, never `exp` itself (by id), optionally of one
        zone and/or level: what the updater compares a candidate with, so it reads only those `k` entries."""
        ...
