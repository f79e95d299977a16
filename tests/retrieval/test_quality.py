"""Ranking quality on a labelled synthetic library, for every retriever: the entries of the query's own category
rank first, in every zone and level, and an entry's neighbours are of its category."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexlearn.experience import Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import get_retriever, tantivy_index
from tests.support.bench import benchmark_module

_synthetic = benchmark_module("synthetic")  # the labelled library the retrieval benchmark builds
SyntheticSpec, build_library = _synthetic.SyntheticSpec, _synthetic.build_library
category_of, category_query = _synthetic.category_of, _synthetic.category_query

SPEC = SyntheticSpec(size=3000, seed=7)
CATEGORIES = range(0, SPEC.categories, 3)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    with build_library(Path(tmp_path_factory.mktemp("quality")) / "lib.db", SPEC) as lib:
        yield lib


@pytest.fixture(params=["bm25", "tantivy", "tantivy-pruned"])
def name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "tantivy-pruned":
        # Make the library count as big, so the search leaves out common words as it does at scale.
        monkeypatch.setattr(tantivy_index, "_COMMON_MIN_DOCS", 0)
        return "tantivy"
    return request.param


def _sizes(lib: Library) -> Counter[tuple[int, str, str]]:
    return Counter((category_of(e.id), str(e.zone), str(e.level)) for e in lib.list())


def test_the_querys_category_ranks_first_in_every_zone_and_level(labelled: Library, name: str) -> None:
    retriever = get_retriever(name, labelled)
    sizes = _sizes(labelled)
    for category in CATEGORIES:
        query = category_query(SPEC, category)
        for zone in Zone:
            for level in Level:
                hits = retriever.search(query, k=4, zone=zone, level=level)
                expected = min(4, sizes[category, str(zone), str(level)])
                assert [category_of(h.experience.id) for h in hits[:expected]] == [category] * expected, (
                    category,
                    zone,
                    level,
                )
                assert all((h.experience.zone, h.experience.level) == (zone, level) for h in hits)
        top = retriever.search(query, k=8)
        assert [category_of(h.experience.id) for h in top] == [category] * 8


def test_neighbours_are_of_the_entrys_category(labelled: Library, name: str) -> None:
    retriever = get_retriever(name, labelled)
    entries = labelled.list()[::150]
    for exp in entries:
        hits = retriever.neighbours(exp, k=5)
        assert len(hits) == 5 and exp.id not in {h.experience.id for h in hits}
        assert [category_of(h.experience.id) for h in hits] == [category_of(exp.id)] * 5, exp.id
