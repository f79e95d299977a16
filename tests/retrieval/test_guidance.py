"""Forward guidance: hierarchical, token-budgeted selection over a Retriever."""

from __future__ import annotations

import pytest

from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.models.base import PromptKind
from flexlearn.retrieval import Bm25Retriever, select_guidance
from flexlearn.retrieval.guidance import CHAT_CASE_MIN_SHARED, case_gate

QUERY = "In triangle ABC the sides are 13, 14 and 15. Find the area of the triangle."


def add(lib: Library, zone: Zone, level: Level, content: str, parent: Experience | None = None) -> Experience:
    exp = Experience(zone=zone, level=level, title=f"{zone} {level}", content=content)
    exp.parent_id = parent.id if parent else None
    return lib.add(exp, reason="test")


@pytest.fixture
def tree(lib: Library) -> dict[str, Experience]:
    """A triangle lesson in every zone and level, with hierarchy, among unrelated lessons."""
    g, w = Zone.GOLDEN, Zone.WARNING
    out: dict[str, Experience] = {}
    # The golden principle says nothing about triangles: it can only arrive as a case's ancestor.
    out["gP"] = add(lib, g, Level.PRINCIPLE, "Reduce a figure to quantities you know formulas for.")
    out["gp"] = add(lib, g, Level.PATTERN, "For a triangle given by its sides use Heron's formula.", out["gP"])
    out["gc"] = add(lib, g, Level.CASE, "Triangle 13 14 15: s = 21, area = sqrt(21*8*7*6) = 84.", out["gp"])
    out["wP"] = add(lib, w, Level.PRINCIPLE, "Never trust a triangle area you did not check against a bound.")
    out["wp"] = add(lib, w, Level.PATTERN, "Triangle area: forgetting the 1/2 doubles it.", out["wP"])
    out["wc"] = add(lib, w, Level.CASE, "Area of triangle 13 14 15 given as 168: the 1/2 was dropped.", out["wp"])
    for i in range(8):
        add(lib, g, Level.PATTERN, f"Unrelated: prime factorisation of {i * 97 + 1001} by trial division.")
    return out


def retrieve(lib: Library, query: str, *, budget_tokens: int = 1500, per_level: int = 4) -> list[Experience]:
    return select_guidance(Bm25Retriever(lib), lib, query, budget_tokens=budget_tokens, per_level=per_level)


def total(exps: list[Experience]) -> int:
    return sum(e.approx_tokens() for e in exps)


def test_every_zone_and_level_is_represented_in_reading_order(lib: Library, tree: dict[str, Experience]) -> None:
    got = retrieve(lib, QUERY, budget_tokens=1500)
    assert {e.id for e in got} == {e.id for e in tree.values()}
    order = [(e.level, e.zone) for e in got]
    assert order == [
        (Level.PRINCIPLE, Zone.GOLDEN),
        (Level.PRINCIPLE, Zone.WARNING),
        (Level.PATTERN, Zone.GOLDEN),
        (Level.PATTERN, Zone.WARNING),
        (Level.CASE, Zone.GOLDEN),
        (Level.CASE, Zone.WARNING),
    ]


def test_a_case_brings_its_ancestors(lib: Library, tree: dict[str, Experience]) -> None:
    assert all(
        h.experience.id != tree["gP"].id for h in Bm25Retriever(lib).search(QUERY, k=50)
    )  # it does not match by itself
    assert tree["gP"].id in {e.id for e in retrieve(lib, QUERY)}


@pytest.mark.parametrize("budget", [0, 5, 12, 20, 30, 45, 60, 100])
def test_the_budget_is_never_exceeded(lib: Library, tree: dict[str, Experience], budget: int) -> None:
    got = retrieve(lib, QUERY, budget_tokens=budget)
    assert total(got) <= budget
    assert len({e.id for e in got}) == len(got)


def test_one_long_case_cannot_crowd_out_the_other_zones_and_levels(lib: Library, tree: dict[str, Experience]) -> None:
    budget = total(list(tree.values()))
    # The best-matching hit of all, and nearly as long as the whole budget.
    long = add(lib, Zone.GOLDEN, Level.CASE, "Triangle ABC sides 13, 14 and 15, find the area. " * (budget // 13))
    assert Bm25Retriever(lib).search(QUERY, k=1)[0].experience.id == long.id and long.approx_tokens() <= budget
    got = retrieve(lib, QUERY, budget_tokens=budget)
    assert total(got) <= budget
    assert {(e.zone, e.level) for e in got} == {(z, lv) for z in Zone for lv in Level}


def test_an_entry_that_does_not_fit_is_skipped_and_smaller_ones_still_fill(
    lib: Library, tree: dict[str, Experience]
) -> None:
    budget = total([tree["wp"], tree["gp"]]) + 1
    got = retrieve(lib, QUERY, budget_tokens=budget)
    assert got and total(got) <= budget
    assert all(e.content == lib.get(e.id).content for e in got)  # nothing is cut


def test_per_level_limits_the_hits(lib: Library) -> None:
    for i in range(6):
        add(lib, Zone.GOLDEN, Level.PATTERN, f"triangle lesson number {i}")
    assert len(retrieve(lib, "triangle", per_level=2)) == 2
    assert retrieve(lib, "triangle", per_level=0) == []


def test_no_match_and_no_counters(lib: Library, tree: dict[str, Experience]) -> None:
    assert retrieve(lib, "") == []
    assert retrieve(lib, "zebra quokka") == []
    retrieve(lib, QUERY)
    assert all(e.retrieved == 0 for e in lib.list())


def test_a_pattern_hit_brings_its_principle(lib: Library) -> None:
    principle = add(lib, Zone.GOLDEN, Level.PRINCIPLE, "Name what is asked before computing anything.")
    add(lib, Zone.GOLDEN, Level.PATTERN, "Triangle sides 13 14 15: use Heron's formula for the area.", principle)
    got = retrieve(lib, QUERY)
    assert [e.level for e in got] == [Level.PRINCIPLE, Level.PATTERN]
    assert got[0].id == principle.id


def test_min_shared_drops_hits_about_something_else(lib: Library) -> None:
    add(lib, Zone.GOLDEN, Level.PRINCIPLE, "The area of a salt flat after the water evaporates holds the same salt.")
    kept = add(lib, Zone.GOLDEN, Level.PATTERN, "Triangle area from its three sides: Heron's formula.")
    assert len(retrieve(lib, QUERY)) == 2  # BM25 returns the best it has, related or not
    got = select_guidance(Bm25Retriever(lib), lib, QUERY, min_shared=2)
    assert [e.id for e in got] == [kept.id]


def test_case_min_shared_holds_cases_alone_to_the_bar(lib: Library) -> None:
    # A case of another problem, sharing only "area" with the query, and a principle sharing no more.
    lesson = add(lib, Zone.GOLDEN, Level.PRINCIPLE, "Compute an area from the lengths you are given.")
    add(lib, Zone.GOLDEN, Level.CASE, "A rectangle 3 by 4 has area 12, a garden of 12 square metres.")
    related = add(lib, Zone.WARNING, Level.CASE, "Triangle sides 13, 14, 15: area given as 168, the half dropped.")
    assert len(retrieve(lib, QUERY)) == 3
    got = select_guidance(Bm25Retriever(lib), lib, QUERY, case_min_shared=3)
    assert {e.id for e in got} == {lesson.id, related.id}


def test_only_a_chat_actor_has_its_cases_held_to_the_bar() -> None:
    assert case_gate(PromptKind.CHAT) == CHAT_CASE_MIN_SHARED > 0
    assert case_gate(PromptKind.COMPLETION) == 0


def test_a_short_question_holds_cases_to_half_its_words(lib: Library) -> None:
    case = add(lib, Zone.GOLDEN, Level.CASE, "The capital of France is Paris.")
    got = select_guidance(Bm25Retriever(lib), lib, "What is the capital of France?", case_min_shared=5)
    assert [e.id for e in got] == [case.id]  # shares "capital" and "france": both of the question's words


def kind(lib: Library, zone: Zone, title: str, content: str) -> Experience:
    return lib.add(Experience(zone=zone, level=Level.CASE, title=title, content=content), reason="test")


FORMULA_Q = (
    "Use formula Working Capital to answer the question. Answer with a number. Formula: Working Capital = Current "
    "Assets - Current Liabilities. Question: a hotel has current assets of $780,000 and current liabilities of "
    "$521,000. What is its working capital?"
)


def test_a_category_shows_the_cases_of_its_kind_alone(lib: Library) -> None:
    # A case of another kind sharing more of the question's words than the one of its own kind.
    other = kind(lib, Zone.GOLDEN, "Current Ratio", "Current assets $780,000 over current liabilities $521,000: 1.50.")
    own = kind(lib, Zone.GOLDEN, "Working Capital", "Capital of a shop: 90,000 - 40,000 = 50000.00.")
    failed = kind(lib, Zone.WARNING, "working  capital", "Gave 250.00 for $250,000: the right answer was 250000.0.")
    lesson = add(lib, Zone.GOLDEN, Level.PRINCIPLE, "Working capital is what current assets leave after liabilities.")
    plain = select_guidance(Bm25Retriever(lib), lib, FORMULA_Q)
    assert other.id in {e.id for e in plain}
    got = select_guidance(Bm25Retriever(lib), lib, FORMULA_Q, category="Working Capital")
    # The other kind's case is gone; both zones' cases of its kind are shown, and lessons are chosen as before.
    assert {e.id for e in got} == {own.id, failed.id, lesson.id}
    # A kind the library holds no case of: cases are chosen as without a category.
    assert {e.id for e in select_guidance(Bm25Retriever(lib), lib, FORMULA_Q, category="EBITDA")} == {
        e.id for e in plain
    }


def test_cases_of_the_kind_are_found_beyond_the_best_matches(lib: Library) -> None:
    for i in range(30):
        kind(lib, Zone.GOLDEN, "Current Ratio", f"Current assets and current liabilities of hotel {i}: ratio 1.{i}.")
    own = kind(lib, Zone.GOLDEN, "Working Capital", "A shop: 90 - 40 = 50.")
    got = select_guidance(Bm25Retriever(lib), lib, FORMULA_Q, category="Working Capital", per_level=2)
    assert [e.id for e in got if e.level == Level.CASE] == [own.id]


def test_ancestors_of_reads_a_generation_a_query_and_stops_at_quarantine(
    lib: Library, tree: dict[str, Experience]
) -> None:
    shown = lib.shown()
    entries = [lib.get(e.id) for e in tree.values()]
    statements = []
    execute = lib._conn.execute

    def counted(*args: object) -> object:
        statements.append(args[0])
        return execute(*args)

    lib._conn.execute = counted  # type: ignore[method-assign]
    try:
        chains = shown.ancestors_of(entries)
    finally:
        lib._conn.execute = execute  # type: ignore[method-assign]
    assert chains == {e.id: shown.ancestors(e) for e in entries}
    assert [a.id for a in chains[tree["gc"].id]] == [tree["gp"].id, tree["gP"].id]
    assert len(statements) == 2  # parents, then grandparents: not one read per parent
    # A quarantined parent ends the chain there, as `ancestors` ends it: nothing above it is reached through it.
    lib._conn.execute("UPDATE experiences SET status = 'quarantined' WHERE id = ?", (tree["gp"].id,))
    chains = shown.ancestors_of([lib.get(tree["gc"].id), lib.get(tree["wc"].id)])
    assert chains[tree["gc"].id] == [] and [a.id for a in chains[tree["wc"].id]] == [tree["wp"].id, tree["wP"].id]


def test_a_guidance_checks_the_library_revision_once_and_a_lone_search_every_time(
    lib: Library, tree: dict[str, Experience]
) -> None:
    pytest.importorskip("tantivy")
    from flexlearn.retrieval.tantivy_retriever import TantivyRetriever

    retriever = TantivyRetriever(lib)
    index = retriever._index
    assert index is not None
    syncs = []
    sync = index.sync

    def counted() -> None:
        syncs.append(1)
        sync()

    index.sync = counted  # type: ignore[method-assign]
    try:
        got = select_guidance(retriever, lib, QUERY, budget_tokens=1500)
        assert {e.id for e in got} == {e.id for e in tree.values()} and len(syncs) == 1
        # Outside a guidance every search checks, so the updater sees a write made just before it.
        added = add(lib, Zone.GOLDEN, Level.PATTERN, "Triangle with sides 5 12 13 is right-angled: area 30.")
        assert added.id in {h.experience.id for h in retriever.search("sides 5 12 13 right-angled", k=3)}
        retriever.search(QUERY)
        assert len(syncs) == 3
    finally:
        index.sync = sync  # type: ignore[method-assign]
