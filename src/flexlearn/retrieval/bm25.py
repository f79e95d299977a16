"""The FTS5 retriever ("bm25"): BM25 over the library's own SQLite FTS5 index. Exact and always current, but it
scores every row sharing a word with the query, so it slows down as the library grows (`TantivyRetriever` is the
default for that reason); also the fallback when the tantivy index cannot be used.

The index is part of the library file and triggers update it inside each write's transaction, so it is never
stale and needs no building.
"""

from __future__ import annotations

from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval.base import Hit


class Bm25Retriever:
    """`Retriever` over `Library.search` (BM25 weighting title above content above examples)."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.search`."""
        return [Hit(exp, score) for exp, score in self.library.search(query, k=k, zone=zone, level=level)]

    def neighbours(
        self, exp: Experience, *, k: int = 5, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.neighbours`. The query is the experience's whole text."""
        text = "\n".join([exp.title, exp.content, *exp.examples])
        # One extra hit, in case `exp` is stored already and finds itself first.
        hits = self.search(text, k=k + 1, zone=zone, level=level)
        return [h for h in hits if not exp.id or h.experience.id != exp.id][:k]
