"""The index-backed retriever: BM25 with top-k pruning over a tantivy index kept beside the library file, or, for
a library on a PostgreSQL server, in a per-user cache folder of the host (`index_home`).

FTS5 scores every row that shares a word with the query, and a problem's ~26 words reach most of a big
library, so its latency grows with the library (0.4 s at 100,000 entries). tantivy stops scoring once no
remaining block of postings can enter the top k, which keeps a search in the milliseconds at a million.

Before each search (inside a `retrieval.one_view` block, such as a guidance's six searches, before the first of
them only) the retriever checks the library's revision (one read) and, when the library has changed, reads the
changed entries from the event log first (`LibraryIndex.sync`: into memory, with tantivy
committing them in the background), so it answers for the library as committed, also when another process (on
any host, for a server) wrote it. When the index cannot be used (another process holds its writer lock for long
while it must be built, its folder cannot be written, a server refuses the index's own read connection) the
search falls back to the library's own lexical search (`Bm25Retriever`: FTS5 in a file, `ts_rank` on a server)
for that query.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from functools import lru_cache

from flexlearn.errors import LibraryError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.reader import LibraryReplacedError, LibrarySource, source_of
from flexlearn.library.search import query_tokens
from flexlearn.library.store import Library
from flexlearn.retrieval.base import Hit, in_view, note_in_view
from flexlearn.retrieval.bm25 import Bm25Retriever
from flexlearn.retrieval.tantivy_index import IndexBusyError, LibraryIndex, part

log = logging.getLogger(__name__)

# Open indexes by library: factories run once per evaluation or absorbed problem, and reopening an index (and
# its first revision check) each time would be waste. A few libraries per process at most.
_OPEN: OrderedDict[tuple[object, ...], LibraryIndex] = OrderedDict()
_OPEN_MAX = 8
_OPEN_LOCK = threading.Lock()


def open_index(source: LibrarySource) -> LibraryIndex:
    """The (cached) index of the library `source` reads. The key (`LibrarySource.key`) includes a file's inode
    and a server library's instance, so a library deleted and made again at the same place gets an index of its
    own."""
    key = source.key
    with _OPEN_LOCK:
        index = _OPEN.get(key)
        if index is None:
            index = _OPEN[key] = LibraryIndex(source)
            if len(_OPEN) > _OPEN_MAX:
                _OPEN.popitem(last=False)[1].close()
        _OPEN.move_to_end(key)
        return index


def forget_index(index: LibraryIndex) -> None:
    """Close `index` and drop it from the open ones (its library was dropped and made again)."""
    with _OPEN_LOCK:
        for key in [key for key, open in _OPEN.items() if open is index]:
            del _OPEN[key]
    index.close()


def _parts(zone: Zone | str | None, level: Level | str | None) -> list[str]:
    # Validate like the FTS5 filters: an unknown zone or level is a ValueError.
    zones = list(Zone) if zone is None else [Zone(zone)]
    levels = list(Level) if level is None else [Level(level)]
    return [part(z, lv) for lv in levels for z in zones]


class TantivyRetriever:
    """`Retriever` over the library's tantivy index (`LibraryIndex`), with `Bm25Retriever` (the library's own
    lexical search) as the fallback."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._fallback = Bm25Retriever(library)
        self._fallback_name = "FTS5" if library.path is not None else "the server's own search"
        self._index = self._open()
        # select_guidance asks one query six times (once per zone and level): analyse it once.
        self._stems = lru_cache(maxsize=8)(self._analyse)

    def _open(self) -> LibraryIndex | None:
        try:
            return open_index(source_of(self.library))
        except OSError as e:
            where = "beside" if self.library.path is not None else "for"
            log.warning(
                "cannot open a search index %s %s (%s); using %s", where, self.library.location, e, self._fallback_name
            )
        except LibraryError as e:  # a server that refuses the index's read connection
            log.warning(
                "cannot read %s for a search index (%s); using %s", self.library.location, e, self._fallback_name
            )
        return None

    def _synced(self) -> LibraryIndex | None:
        """The index, brought to the library's revision; None when this search must use the fallback."""
        for _ in range(2):
            if self._index is None:
                return None
            if in_view(self._index):
                return self._index  # brought to the library's revision at this view's first search
            try:
                self._index.sync()
                note_in_view(self._index)
                return self._index
            except IndexBusyError as e:
                log.warning("%s; this search uses %s", e, self._fallback_name)
                return None
            except LibraryReplacedError as e:
                # The library on the server was dropped and made again: its old index must not answer for it.
                log.info("%s: opening its index again", e)
                forget_index(self._index)
                self._index = self._open()
        return None

    def _analyse(self, query: str) -> tuple[str, ...]:
        assert self._index is not None
        return tuple(self._index.stems(query_tokens(query)))

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.search`. Scores are BM25 as FTS5 weighs it (`LibraryIndex.search`), comparable only
        within one answer."""
        parts = _parts(zone, level)
        index = self._synced()
        if index is None:
            return self._fallback.search(query, k=k, zone=zone, level=level)
        ranked = index.search(self._stems(query), parts, k)
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
