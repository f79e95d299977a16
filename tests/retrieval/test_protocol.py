"""The Retriever protocol: what implements it, and that guidance needs nothing else."""

from __future__ import annotations

from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import Bm25Retriever, Hit, Retriever, select_guidance
from tests.library.builders import make


class Listed:
    """A retriever that answers from a fixed list, in order, whatever the query: proof that guidance relies on
    the protocol alone."""

    def __init__(self, experiences: list[Experience]) -> None:
        self.experiences = experiences
        self.queries: list[tuple[str, Zone | str | None, Level | str | None]] = []

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        self.queries.append((query, zone, level))
        found = [
            e for e in self.experiences if (zone is None or e.zone == zone) and (level is None or e.level == level)
        ]
        return [Hit(e, 1.0 / (i + 1)) for i, e in enumerate(found[:k])]

    def neighbours(
        self, exp: Experience, *, k: int = 5, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        return [h for h in self.search("", k=k + 1, zone=zone, level=level) if h.experience.id != exp.id][:k]


def test_implementations_conform(lib: Library) -> None:
    assert isinstance(Bm25Retriever(lib), Retriever)
    assert isinstance(Listed([]), Retriever)
    assert not isinstance(object(), Retriever)


def test_guidance_goes_through_the_retriever_it_is_given(lib: Library) -> None:
    principle = lib.add(make("zebra stripes", level=Level.PRINCIPLE), reason="r")
    case = lib.add(
        make("a quokka case", level=Level.CASE, parent_id=lib.add(make("quokka"), reason="r").id), reason="r"
    )
    retriever = Listed([case, principle])
    got = select_guidance(retriever, lib, "anything at all", budget_tokens=1000, per_level=1)
    # The case brought its pattern along, read from the library; the result reads general to concrete.
    assert [e.level for e in got] == [Level.PRINCIPLE, Level.PATTERN, Level.CASE]
    assert {(z, lv) for _, z, lv in retriever.queries} == {(z, lv) for z in Zone for lv in Level}
    assert all(q == "anything at all" for q, _, _ in retriever.queries)
