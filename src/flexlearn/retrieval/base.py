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

import contextlib
import contextvars
from collections.abc import Iterator
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


# The indexes already brought to the library's revision in the current `one_view` block (by id(), each held so
# that its id is not reused within the block), or None outside one.
_VIEWED: contextvars.ContextVar[dict[int, object] | None] = contextvars.ContextVar("flexlearn_one_view", default=None)


@contextlib.contextmanager
def one_view() -> Iterator[None]:
    """A block of searches that read the library at one revision: an index-backed retriever checks the library's
    revision (and catches up) at its first search in the block, not at each. For a set of searches that belong
    together (a problem's guidance: six or more), which then agree with each other, and for a library on a
    server, where each check is a round trip. Not for the updater: its searches must see every write before
    them. Blocks nest (the outermost one counts)."""
    if _VIEWED.get() is not None:
        yield
        return
    token = _VIEWED.set({})
    try:
        yield
    finally:
        _VIEWED.reset(token)


def in_view(index: object) -> bool:
    """Whether `index` was brought to the library's revision earlier in the current `one_view` block (never
    outside one)."""
    viewed = _VIEWED.get()
    return viewed is not None and id(index) in viewed


def note_in_view(index: object) -> None:
    """Record that `index` was brought to the library's revision in the current `one_view` block, if any."""
    viewed = _VIEWED.get()
    if viewed is not None:
        viewed[id(index)] = index
