"""Replaying a library's event log to a number of absorbed training problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Experience, Level, Provenance, Zone
from flexlearn.library.replay import absorbed, replay
from flexlearn.library.store import Library


def exp(level: Level, content: str, problem: str, parent: str | None = None, zone: Zone = Zone.GOLDEN) -> Experience:
    return Experience(
        zone=zone,
        level=level,
        title="t",
        content=content,
        parent_id=parent,
        provenance=Provenance(task="math", problem_ids=[problem], run_id="r1"),
    )


def view(lib: Library) -> list[tuple]:
    return sorted(
        (e.id, e.zone, e.level, e.content, tuple(e.examples), e.parent_id, tuple(e.provenance.problem_ids))
        for e in lib.list()
    )


@pytest.fixture()
def source(tmp_path: Path) -> Library:
    lib = Library.open(tmp_path / "source.flexlib")
    lib.add(
        Experience(zone=Zone.GOLDEN, level=Level.PRINCIPLE, title="imported", content="Imported rule."),
        reason="imported",
        action=Action.IMPORT,
    )
    p1 = lib.add(exp(Level.PRINCIPLE, "Check units.", "p1"), reason="new", run_id="r1", problem_id="p1")
    lib.add(exp(Level.CASE, "p1 case", "p1", parent=p1.id), reason="new", run_id="r1", problem_id="p1")
    lib.add(exp(Level.CASE, "p2 case", "p2", zone=Zone.WARNING), reason="new", run_id="r1", problem_id="p2")
    lib.merge(
        p1.id,
        content="Check units and signs.",
        examples=None,
        candidate=exp(Level.PRINCIPLE, "Signs.", "p2"),
        reason="same idea",
        run_id="r1",
        problem_id="p2",
    )
    lib.discard(exp(Level.PATTERN, "p3 junk", "p3"), reason="too specific", run_id="r1", problem_id="p3")
    lib.add(exp(Level.CASE, "p3 case", "p3"), reason="new", run_id="r1", problem_id="p3")
    lib.record_retrieval([p1.id, p1.id])
    yield lib
    lib.close()


def test_absorbed_order(source: Library) -> None:
    assert absorbed(source) == [("r1", "p1"), ("r1", "p2"), ("r1", "p3")]


def test_full_replay_equals_the_source_without_usage_counters(source: Library, tmp_path: Path) -> None:
    with Library.open(tmp_path / "all.flexlib") as dest:
        result = replay(source, dest)
        assert view(dest) == view(source)
        assert all(e.retrieved == 0 for e in dest.list())
        assert (result.problems, result.experiences) == (3, source.count())
        assert dest.stats()["events"] == source.stats()["events"]


@pytest.mark.parametrize(
    ("size", "contents"),
    [
        (0, {"Imported rule."}),
        (1, {"Imported rule.", "Check units.", "p1 case"}),
        (2, {"Imported rule.", "Check units and signs.", "p1 case", "p2 case"}),
        (3, {"Imported rule.", "Check units and signs.", "p1 case", "p2 case", "p3 case"}),
    ],
)
def test_replay_to_a_size(source: Library, tmp_path: Path, size: int, contents: set[str]) -> None:
    with Library.open(tmp_path / f"s{size}.flexlib") as dest:
        replay(source, dest, problems=size)
        assert {e.content for e in dest.list()} == contents
        merged = [e for e in dest.list() if e.content.startswith("Check units")]
        if size >= 2:
            assert merged[0].provenance.problem_ids == ["p1", "p2"]


def test_replay_refuses_a_non_empty_destination(source: Library, tmp_path: Path) -> None:
    with Library.open(tmp_path / "busy.flexlib") as dest:
        dest.add(exp(Level.CASE, "already here", "x"), reason="manual")
        with pytest.raises(LibraryError, match="empty"):
            replay(source, dest)
