"""The entries changed since the tantivy index last committed, held in memory and scored like tantivy would.

A tantivy commit costs ~70 ms (it syncs files to disk), and learning changes the library once per problem, so
committing before every search held the event loop for most of a run. Instead the index commits now and then
(`LibraryIndex`), and a search merges tantivy's committed hits, minus every id changed since (masked), with the
changed entries' current rows scored here as tantivy scores them (BM25, k1 1.2, b 0.75, its one-byte lengths,
each stem weighted by `weight`) over the committed statistics plus the overlay's own. Entries are at most a few
hundred, so scoring them all is cheap.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass

K1 = 1.2
B = 0.75


def _norms() -> list[int]:
    # tantivy stores a document's length in one byte: exact to 40, then buckets of 8 whose width doubles.
    table, step = list(range(41)), 2
    while len(table) < 256:
        table += [table[-1] + step * i for i in range(1, 9)]
        step *= 2
    return table[:256]


_NORMS = _norms()


def stored_length(length: int) -> int:
    """The length tantivy's BM25 sees: `length` rounded down to the one-byte scale it stores."""
    return _NORMS[bisect.bisect_right(_NORMS, length) - 1]


@dataclass(frozen=True)
class OverlayDoc:
    part: str  # the entry's zone and level (`tantivy_index.part`)
    tf: Counter[str]
    length: int


def weight(df: int, docs: int) -> float:
    """A stem's BM25 weight as FTS5 computes it, over the whole library (`df` of its `docs` entries hold the stem):
    log((N - n + 0.5) / (n + 0.5)), at least 1e-6, so a stem in half the entries or more counts next to nothing."""
    idf = math.log(max(docs - df + 0.5, 0.5) / (df + 0.5))
    return max(idf, 1e-6)


def tantivy_idf(df: int, docs: int) -> float:
    """The idf tantivy's own BM25 gives a term of `df` documents among `docs`. A search boosts each term by
    `weight / tantivy_idf`, so tantivy scores with `weight`."""
    return math.log(1.0 + (docs - df + 0.5) / (df + 0.5))


def bm25(tf: int, length: int, *, weight: float, avg_length: float) -> float:
    """tantivy's BM25 term score for a stem of weight `weight` (`length` as the document has it; it is rounded as
    tantivy stores it)."""
    norm = K1 * (1.0 - B + B * stored_length(length) / avg_length) if avg_length > 0 else K1
    return weight * (K1 + 1.0) * tf / (tf + norm)


class Overlay:
    """Changed ids with the revision of their last change and their current document (None: not searchable)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, OverlayDoc | None]] = {}
        self.df: dict[str, Counter[str]] = {}  # per part, documents holding each stem
        self.tokens: Counter[str] = Counter()  # per part
        self.docs: Counter[str] = Counter()  # per part

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, id: str) -> bool:
        return id in self._entries

    def put(self, id: str, seq: int, doc: OverlayDoc | None) -> None:
        self._forget(id)
        self._entries[id] = (seq, doc)
        if doc is not None:
            self.df.setdefault(doc.part, Counter()).update(doc.tf.keys())
            self.tokens[doc.part] += doc.length
            self.docs[doc.part] += 1

    def drop_through(self, revision: int) -> None:
        """Forget ids last changed at or before `revision`: the committed index has them as they are."""
        for id in [id for id, (seq, _) in self._entries.items() if seq <= revision]:
            self._forget(id)

    def _forget(self, id: str) -> None:
        old = self._entries.pop(id, None)
        if old is None or old[1] is None:
            return
        doc = old[1]
        self.df[doc.part].subtract(doc.tf.keys())
        self.tokens[doc.part] -= doc.length
        self.docs[doc.part] -= 1

    def documents(self, part: str) -> list[tuple[str, OverlayDoc]]:
        return [(id, doc) for id, (_, doc) in self._entries.items() if doc is not None and doc.part == part]
