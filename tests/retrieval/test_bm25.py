"""The default retriever: BM25 over the library's FTS5 index, as hits."""

from __future__ import annotations

from flexlearn.experience import Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import Bm25Retriever, Hit
from tests.library.builders import fill, make


def test_search_gives_the_library_ranking_as_hits(lib: Library) -> None:
    retriever = Bm25Retriever(fill(lib))
    query = "What is the area of a triangle with sides 13, 14, 15?"
    hits = retriever.search(query, k=3)
    assert all(isinstance(h, Hit) for h in hits)
    assert [(h.experience, h.score) for h in hits] == lib.search(query, k=3)
    assert [h.experience.title for h in retriever.search("triangle", zone=Zone.WARNING)] == ["triangle pitfalls"]
    assert retriever.search("triangle", zone="golden", level=Level.CASE) == []
    assert retriever.search("") == []


def test_neighbours_exclude_itself_and_read_only_k(lib: Library) -> None:
    retriever = Bm25Retriever(fill(lib))
    target = retriever.search("triangle area")[0].experience
    assert [h.experience.title for h in retriever.neighbours(target, k=5)] == ["triangle pitfalls"]
    assert retriever.neighbours(target, k=0) == []
    candidate = make("triangle area by Heron", title="triangle")
    assert retriever.neighbours(candidate, k=1)[0].experience.title == "triangle area"


def test_neighbours_can_be_filtered_by_zone_and_level(lib: Library) -> None:
    retriever = Bm25Retriever(fill(lib))
    candidate = make("triangle area by Heron", title="triangle")
    assert [h.experience.title for h in retriever.neighbours(candidate, k=5, zone="warning")] == ["triangle pitfalls"]
    assert [h.experience.title for h in retriever.neighbours(candidate, k=5, level=Level.PATTERN)] == ["triangle area"]
    assert retriever.neighbours(candidate, k=5, zone=Zone.WARNING, level=Level.PRINCIPLE) == []
