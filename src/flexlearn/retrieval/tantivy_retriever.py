"""The index-backed retriever: BM25 with top-k pruning over a tantivy index kept beside the library file.

FTS5 scores every row that shares a word with the query, and a problem's ~26 words reach most of a big
library, so its latency grows with the library (0.4 s at 100,000 entries). tantivy stops scoring once no
remaining block of postings can enter the top k, which keeps a search in the milliseconds at a million.

Before each search the retriever checks the file's revision (one SQLite read) and, when the library has
changed, reads the changed entries from the event log first (`LibraryIndex.sync`: into memory, with tantivy
committing them in the background), so it answers for the library as committed, also when another process wrote
it. When the index cannot be used (another process holds its writer lock for long while it must be built, or its
folder cannot be written) the search falls back to FTS5 for that query.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.search import query_tokens
from flexlearn.library.store import Library
from flexlearn.retrieval.base import Hit
from flexlearn.retrieval.bm25 import Bm25Retriever
from flexlearn.retrieval.tantivy_index import IndexBusyError, LibraryIndex, part

log = logging.getLogger(__name__)

# Open indexes by library file: factories run once per evaluation or absorbed problem, and reopening an index
# (and its first revision check) each time would be waste. A few libraries per process at most.
_OPEN: OrderedDict[tuple[str, int, int], LibraryIndex] = OrderedDict()
_OPEN_MAX = 8
_OPEN_LOCK = threading.Lock()


def open_index(path: Path) -> LibraryIndex:
    """The (cached) index of the library file at `path`. The key includes the file's inode, so a library
    deleted and made again at the same path gets an index of its own."""
    stat = os.stat(path)
    key = (str(path.resolve()), stat.st_dev, stat.st_ino)
    with _OPEN_LOCK:
        index = _OPEN.get(key)
        if index is None:
            index = _OPEN[key] = LibraryIndex(path)
            if len(_OPEN) > _OPEN_MAX:
                _OPEN.popitem(last=False)[1].close()
        _OPEN.move_to_end(key)
        return index


def _parts(zone: Zone | str | None, level: Level | str | None) -> list[str]:
    # Validate like the FTS5 filters: an unknown zone or level is a ValueError.
    zones = list(Zone) if zone is None else [Zone(zone)]
    levels = list(Level) if level is None else [Level(level)]
    return [part(z, lv) for lv in levels for z in zones]


class TantivyRetriever:
    """`Retriever` over the library's tantivy index (`LibraryIndex`), with `Bm25Retriever` as the fallback."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._fallback = Bm25Retriever(library)
        self._index: LibraryIndex | None = None
        if library.path is None:
            log.info("%s is on a server, with no folder for a search index: using its own search", library.location)
        else:
            try:
                self._index = open_index(library.path)
            except OSError as e:
                log.warning("cannot open a search index beside %s (%s); using FTS5", library.path, e)
        # select_guidance asks one query six times (once per zone and level): analyse it once.
        self._stems = lru_cache(maxsize=8)(self._analyse)

    def _analyse(self, query: str) -> tuple[str, ...]:
        assert self._index is not None
        return tuple(self._index.stems(query_tokens(query)))

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.search`. Scores are BM25 as FTS5 weighs it (`LibraryIndex.search`), comparable only
        within one answer."""
        parts = _parts(zone, level)
        if self._index is None:
            return self._fallback.search(query, k=k, zone=zone, level=level)
        try:
            self._index.sync()
        except IndexBusyError as e:
            log.warning("%s; this search uses FTS5", e)
            return self._fallback.search(query, k=k, zone=zone, level=level)
        ranked = self._index.search(self._stems(query), parts, k)
        found = self.library.find_retrievable([id for id, _ in ranked])
        # An id missing here was deleted (or quarantined) after the sync: leave it out rather than show stale text.
        return [Hit(found[id], score) for id, score in ranked if id in found]

    def neighbours(
        self, exp: Experience, *, k: int = 5, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.neighbours`. The query is the experience's whole text, as for `Bm25Retriever`."""
        text = "\n".join([exp.title, exp.content, *exp.examples])
        hits = self.search(text, k=k + 1, zone=zone, level=level)
        return [h for h in hits if not exp.id or h.experience.id != exp.id][:k]
