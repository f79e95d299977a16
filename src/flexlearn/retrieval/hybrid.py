"""The hybrid retriever ("hybrid"): the lexical ranking (BM25, the tantivy index or its FTS5 fallback) and the
dense one (`DenseRetriever`) fused by reciprocal rank fusion.

RRF scores an entry by its ranks alone, sum over the lists of 1 / (RRF_K + rank), rank 1 the best: BM25 scores and
cosine similarities are on scales that cannot be added, ranks can. An entry found by both lists ranks above one
found by either alone at a similar rank; one found by a single list still enters, so a lesson worded differently
from the question (found by meaning only) and one that shares its rare words (found lexically only) both can.
Each list is searched `DEPTH` deep (or `k`, when more), so an entry second in both can overtake one first in
one; docs/retrieval.md has the measurements behind the constants.
"""

from __future__ import annotations

from collections.abc import Sequence

from flexlearn.experience import Experience, Level, Zone
from flexlearn.retrieval.base import Hit, Retriever

RRF_K = 60
DEPTH = 10


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], *, rrf_k: int = RRF_K) -> list[Hit]:
    """The union of `rankings` (each best first), scored sum(1 / (rrf_k + rank)) and sorted best first. Ties go
    to the entry with the better best rank, then to the one first seen (earlier list, then earlier rank)."""
    fused: dict[str, tuple[Experience, float, int, int]] = {}  # id -> (entry, score, best rank, first seen)
    seen = 0
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            id = hit.experience.id
            exp, score, best, first = fused.get(id, (hit.experience, 0.0, rank, seen))
            fused[id] = (exp, score + 1.0 / (rrf_k + rank), min(best, rank), first)
            seen += 1
    ordered = sorted(fused.values(), key=lambda f: (-f[1], f[2], f[3]))
    return [Hit(exp, score) for exp, score, _, _ in ordered]


class HybridRetriever:
    """`Retriever` fusing a lexical and a dense retriever by `reciprocal_rank_fusion`."""

    def __init__(self, lexical: Retriever, dense: Retriever, *, rrf_k: int = RRF_K, depth: int = DEPTH) -> None:
        self.lexical = lexical
        self.dense = dense
        self.rrf_k = rrf_k
        self.depth = depth

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.search`. Scores are RRF sums, comparable only within one answer."""
        if k <= 0:
            return []
        depth = max(k, self.depth)
        rankings = [r.search(query, k=depth, zone=zone, level=level) for r in (self.lexical, self.dense)]
        return reciprocal_rank_fusion(rankings, rrf_k=self.rrf_k)[:k]

    def neighbours(
        self, exp: Experience, *, k: int = 5, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.neighbours`: both retrievers' neighbours, fused."""
        if k <= 0:
            return []
        depth = max(k, self.depth)
        rankings = [r.neighbours(exp, k=depth, zone=zone, level=level) for r in (self.lexical, self.dense)]
        return reciprocal_rank_fusion(rankings, rrf_k=self.rrf_k)[:k]
