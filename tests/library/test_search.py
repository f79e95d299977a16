"""BM25 search over the FTS5 index, and the query built from any text."""

from __future__ import annotations

import pytest

from flexlearn.experience import Zone
from flexlearn.library import search
from flexlearn.library.search import fts_query
from flexlearn.library.store import Library
from tests.library.builders import fill


@pytest.fixture
def filled(lib: Library) -> Library:
    return fill(lib)


def test_search_ranks_the_relevant_entry_first(filled: Library) -> None:
    hits = filled.search("What is the area of a triangle with sides 13, 14, 15?")
    assert hits[0][0].title == "triangle area"
    assert all(e.title != "cooking" for e, _ in hits)
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_search_stems_and_filters(filled: Library) -> None:
    assert filled.search("triangles", k=5)  # porter: triangles ~ triangle
    warning = filled.search("triangle", zone=Zone.WARNING)
    assert [e.title for e, _ in warning] == ["triangle pitfalls"]
    assert filled.search("triangle", zone="golden", level="case") == []
    assert len(filled.search("triangle", k=1)) == 1


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        '"',
        '\'""',
        "AND OR NOT NEAR",
        "NEAR(a b, 3)",
        "title:foo",
        "\\frac{a^2}{b_1} + \\sqrt{x} = $\\boxed{42}$",
        "CCOP(=O)(OCC)c1ccc([N+](=O)[O-])cc1",
        "a* OR -b ^c {d} (e",
        "\x00\x01 null byte",
        "日本語のテキスト",
        "x" * 10_000,
        " ".join(f"word{i}" for i in range(500)),
    ],
)
def test_search_accepts_any_text(filled: Library, query: str) -> None:
    assert isinstance(filled.search(query), list)


def test_fts_query_quotes_caps_and_drops_noise() -> None:
    assert fts_query("") == ""
    assert fts_query("a the of x") == ""
    assert fts_query('say "NEAR" it') == '"say" OR "near"'
    long = fts_query(" ".join(f"w{'x' * (i % 30)}{i}" for i in range(200)))
    assert long.count(" OR ") == search.MAX_QUERY_TOKENS - 1
