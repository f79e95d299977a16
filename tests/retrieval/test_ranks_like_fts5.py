"""The tantivy retriever ranks as FTS5 does: BM25 over the whole library's statistics, whatever zone and level an
entry is in. Index format 2 gave each zone and level a field of its own, and tantivy divides a field's tokens by
the documents of all fields, so an entry of a sparsely filled zone and level looked many times longer than it is
and sank in an unfiltered search: on the learned Formula library recall@5 was 0.776 against FTS5's 0.931
(docs/retrieval.md, "Ranking")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flexlearn.experience import Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import Bm25Retriever, Retriever
from flexlearn.retrieval.tantivy_retriever import TantivyRetriever
from tests.library.builders import make
from tests.support.bench import benchmark_module

FORMULAS = {
    "Current Ratio": "current assets / current liabilities",
    "Quick Ratio": "quick assets / liabilities due",
    "Debt Ratio": "total debt / total assets",
    "Cash Ratio": "cash / liabilities due",
    "Gross Margin": "gross profit / revenue",
    "Net Margin": "net income / revenue",
}
QUESTION = (
    "Use formula Current Ratio to answer the question. A bakery has current assets of 900 and current "
    "liabilities of 300."
)


def _learned_like(lib: Library) -> str:
    """Worked cases of six formulas in one zone and level, as a learning run writes them, and one short warning
    principle of the asked formula alone in its zone and level (the learned library has 2 warning patterns and 5
    golden principles among 103 entries). Returns the principle's id."""
    for name, formula in FORMULAS.items():
        for i in range(4):
            text = (
                f"Solved: use formula {name} to answer the question. Formula: {name} = {formula}. The figures were "
                f"{i}00 and {i}50; divide them as the formula says, round to two decimals. Answer: {i}.5"
            )
            lib.add(make(text, title=name, zone=Zone.GOLDEN, level=Level.CASE), reason="r")
    principle = make(
        "Divide current assets by current liabilities; do not swap them.",
        title="Current Ratio",
        zone=Zone.WARNING,
        level=Level.PRINCIPLE,
    )
    return lib.add(principle, reason="r").id


def _same_ranking(found: Retriever, fts5: Retriever, k: int, **filters: Zone | Level) -> None:
    """The same entries in the top `k` with about the same scores (the same BM25, but for the title's second
    copy counting in tantivy's length and its one-byte lengths); ties may be broken differently."""
    expected = fts5.search(QUESTION, k=k, **filters)
    hits = found.search(QUESTION, k=k, **filters)
    assert {h.experience.id for h in hits} == {h.experience.id for h in expected}, filters
    assert [h.score for h in hits] == pytest.approx([h.score for h in expected], rel=0.02), filters


def test_an_entry_alone_in_its_zone_and_level_ranks_where_fts5_ranks_it(lib: Library) -> None:
    principle = _learned_like(lib)
    hits = TantivyRetriever(lib).search(QUESTION, k=5)
    # FTS5 ranks the principle second, above three of the formula's four cases; format 2 left it out of the top 5
    # for a Quick Ratio case.
    assert [h.experience.id for h in Bm25Retriever(lib).search(QUESTION, k=5)][1] == principle
    assert hits[1].experience.id == principle
    assert all(h.experience.title == "Current Ratio" for h in hits)
    _same_ranking(TantivyRetriever(lib), Bm25Retriever(lib), 8)


def test_filtered_searches_rank_by_the_library_wide_statistics(lib: Library) -> None:
    _learned_like(lib)
    for level in Level:
        for zone in Zone:
            _same_ranking(TantivyRetriever(lib), Bm25Retriever(lib), 8, zone=zone, level=level)


def test_recall_on_the_learned_formula_library_is_that_of_fts5(tmp_path: Path) -> None:
    """The finding itself: the labelled val questions against the real learned library (benchmarks/
    retrieval_recall.py's `learned` set, full questions). Format 2: 0.776 against FTS5's 0.931. The rest of the
    gap is the examples' weight, which FTS5 halves and a tantivy field cannot (docs/retrieval.md)."""
    bench = benchmark_module("retrieval_recall")
    path = tmp_path / "train60.flexlib"
    shutil.copyfile(bench.LIBRARY, path)
    labels = bench.json.loads(bench.LABELS.read_text(encoding="utf-8"))
    questions = [row["question"] for row in bench.load_rows(bench.DATA / "val.jsonl")]
    relevant = [set(q["relevant"]) for q in labels["questions"]]
    with Library.open(path) as lib:
        assert lib.content_hash() == labels["library_content_hash"]
        fts5 = bench.evaluate(Bm25Retriever(lib), questions, relevant)["recall@5"]
        found = bench.evaluate(TantivyRetriever(lib), questions, relevant)["recall@5"]
    assert fts5 == pytest.approx(0.931, abs=0.001)
    assert found >= fts5 - 0.015
