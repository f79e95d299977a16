"""A small library's whole index in memory, scored exactly as a freshly built tantivy index would score it.

Up to `MEMORY_MAX` entries `LibraryIndex` answers from here: a change is one dictionary update, with no commit
to wait for, and the ranking depends on the entries alone, not on when tantivy last committed or merged (a
committed tantivy index still counts replaced documents until it merges them away). That keeps learning runs
exactly repeatable, including across a kill and `--resume`. The price is Python scoring every posting of the
query's stems: at 2,000 entries a flex-mode guidance takes ~2 ms (tantivy 1.3-1.5 ms), at 10,000 ~6 ms (tantivy
~1.5 ms), hence the limit.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

from flexlearn.retrieval.overlay import K1, B, OverlayDoc, stored_length

MEMORY_MAX = 2_000


class MemoryIndex:
    """Per part (zone and level), each stem's postings (id -> term frequency); each id's part and length."""

    def __init__(self) -> None:
        self._postings: dict[str, defaultdict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
        self._docs: dict[str, OverlayDoc] = {}
        self._lengths: dict[str, int] = {}  # as tantivy stores them (`stored_length`)
        self._tokens = 0
        self.part_docs: Counter[str] = Counter()
        self.df: Counter[str] = Counter()  # documents holding each stem, in all parts

    def __len__(self) -> int:
        return len(self._docs)

    def put(self, id: str, doc: OverlayDoc | None) -> None:
        """Set the document of `id` (None: it is not searchable any more)."""
        old = self._docs.pop(id, None)
        self._lengths.pop(id, None)
        if old is not None:
            postings = self._postings[old.part]
            for stem in old.tf:
                del postings[stem][id]
                if not postings[stem]:
                    del postings[stem]
            self.df.subtract(old.tf.keys())
            self._tokens -= old.length
            self.part_docs[old.part] -= 1
        if doc is not None:
            self._docs[id] = doc
            self._lengths[id] = stored_length(doc.length)
            postings = self._postings[doc.part]
            for stem, n in doc.tf.items():
                postings[stem][id] = n
            self.df.update(doc.tf.keys())
            self._tokens += doc.length
            self.part_docs[doc.part] += 1

    def doc_freq(self, part: str, stem: str) -> int:
        return len(self._postings[part].get(stem, ()))

    def search(
        self, parts: Sequence[str], k: int, telling: Callable[[str], list[str]], weights: Mapping[str, float]
    ) -> list[tuple[str, float]]:
        """The `k` best ids for the stems `telling(part)` in any of `parts`, each stem of weight `weights[stem]`,
        scored by BM25 as tantivy scores a document (its one-byte length, the library's average length); ties go
        to the smaller id."""
        docs = len(self._docs)
        scores: Counter[str] = Counter()
        avg_length = self._tokens / docs if docs else 0.0
        # `bm25` unrolled: a search scores every posting of its stems, thousands in a full index.
        base, per_token = (K1 * (1.0 - B), K1 * B / avg_length) if avg_length > 0 else (K1, 0.0)
        for part in parts:
            postings = self._postings[part]
            for stem in telling(part):
                found = postings.get(stem)
                if not found:
                    continue
                factor = (K1 + 1.0) * weights[stem]
                for id, tf in found.items():
                    scores[id] += factor * tf / (tf + base + per_token * self._lengths[id])
        return heapq.nsmallest(k, scores.items(), key=lambda hit: (-hit[1], hit[0]))
