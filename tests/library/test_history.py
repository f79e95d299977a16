"""Versions of a library from its log: listing, the state at a version, diffs, and rollbacks that keep history."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Level
from flexlearn.library.batch import Change
from flexlearn.library.formats import export_json, import_file
from flexlearn.library.history import diff, rollback, state_at, versions
from flexlearn.library.store import Library
from tests.library.builders import make

FIELDS = ("zone", "level", "title", "content", "examples", "parent_id", "status")


def entries(lib: Library) -> dict[str, tuple[object, ...]]:
    return {e.id: tuple(getattr(e, f) for f in FIELDS) for e in lib.list()}


def as_state(state: dict) -> dict[str, tuple[object, ...]]:
    return {id: tuple(getattr(e, f) for f in FIELDS) for id, e in state.items()}


def learn_batch(lib: Library, run_id: str, problem_id: str, changes: list[Change]) -> int:
    lib.apply(changes, run_id=run_id, problem_id=problem_id)
    return lib.revision()


@pytest.fixture
def grown(lib: Library) -> tuple[Library, list[tuple[int, dict[str, tuple[object, ...]]]]]:
    """A library grown by two learned problems, a manual edit and a third problem; each version with the entries
    the library held right after it."""
    lib.begin_run("learn-1", kind="learn", config={})
    seen: list[tuple[int, dict[str, tuple[object, ...]]]] = []
    principle = make("Verify each step.", level=Level.PRINCIPLE)
    v = learn_batch(
        lib,
        "learn-1",
        "p1",
        [Change(principle, Action.ADD, "new"), Change(make("Recompute sums backwards."), Action.ADD, "new", parent=0)],
    )
    seen.append((v, entries(lib)))
    target = next(e for e in lib.list() if e.level == Level.PATTERN)
    v = learn_batch(
        lib,
        "learn-1",
        "p2",
        [
            Change(make("Sum twice."), Action.MERGE, "m", target=target.id, merged_content="Recompute sums twice."),
            Change(make("Estimate first."), Action.ADD, "new"),
            Change(make("Estimate first."), Action.DISCARD, "dup"),
        ],
    )
    seen.append((v, entries(lib)))
    lib.edit(target.id, reason="a person's fix", title="sums")
    seen.append((lib.revision(), entries(lib)))
    root = next(e for e in lib.list() if e.level == Level.PRINCIPLE)
    lib.delete(root.id, reason="wrong")  # its pattern loses its parent
    v = learn_batch(lib, "learn-1", "p3", [Change(make("Draw a figure."), Action.ADD, "new")])
    seen.append((v, entries(lib)))
    return lib, seen


def test_each_batch_is_a_version_numbered_by_the_revision_after_it(grown: tuple) -> None:
    lib, seen = grown
    listed = versions(lib)
    assert [v.number for v in listed] == [seen[0][0], seen[1][0], seen[2][0], seen[2][0] + 1, seen[3][0]]
    assert [v.kind for v in listed] == ["learn", "learn", "edit", "delete", "learn"]
    assert [v.problem_id for v in listed] == ["p1", "p2", None, None, "p3"]
    assert listed[1].actions == {"merge": 1, "add": 1, "discard": 1}


def test_the_state_at_each_version_is_what_the_library_held_then(grown: tuple) -> None:
    lib, seen = grown
    for number, held in seen:
        assert as_state(state_at(lib, number)) == held
    assert state_at(lib, 0) == {}


def test_diff_between_versions_and_to_now(grown: tuple) -> None:
    lib, seen = grown
    first, second = seen[0][0], seen[1][0]
    d = diff(lib, first, second)
    assert d.counts() == {"added": 1, "removed": 0, "changed": 1}
    assert d.changed[0][1].content == "Recompute sums twice." and d.added[0].content == "Estimate first."
    assert diff(lib, seen[-1][0]).counts() == {"added": 0, "removed": 0, "changed": 0}
    with pytest.raises(LibraryError, match="not a version"):
        diff(lib, seen[0][0] + 1)  # inside a batch, not after one


def test_a_rollback_restores_a_version_and_keeps_history(grown: tuple) -> None:
    lib, seen = grown
    history = lib.events()
    events_before = len(history)
    run_id, undone = rollback(lib, seen[0][0], reason="a harmful batch")
    assert entries(lib) == seen[0][1]  # the deleted principle is back, with its pattern linked under it again
    assert undone.counts() == {"added": 2, "removed": 1, "changed": 1}
    log = lib.events()
    assert len(log) > events_before and log[:events_before] == history  # appended to, never rewritten
    assert all(ev.run_id == run_id and "a harmful batch" in ev.reason for ev in log[events_before:])
    assert lib.runs("rollback")[0].run_id == run_id
    # A rollback is a version like any other: rolling it back returns to the state before it.
    rollback(lib, versions(lib)[-2].number)
    assert entries(lib) == seen[-1][1]


def test_a_rollback_past_an_approval_puts_the_entry_back_in_quarantine(lib: Library, tmp_path: Path) -> None:
    with Library.open(tmp_path / "source.flexlib") as source:
        source.add(make("Imported lesson."), reason="r")
        export_json(source, tmp_path / "export.json")
    import_file(lib, tmp_path / "export.json")
    imported = lib.revision()
    [entry] = lib.quarantined()
    lib.approve(entry.id)
    rollback(lib, imported)
    assert [e.id for e in lib.quarantined()] == [entry.id]
    rollback(lib, 0)
    assert lib.count() == 0


def test_revert_undoes_the_batch_alone_and_keeps_what_others_wrote(lib: Library) -> None:
    """The gate's rollback (issue 28): a batch is undone, and neither changes made after it (another writer while
    the check ran) nor another run's changes inside its range are lost."""
    from flexlearn.library.history import revert

    old = lib.add(make("Check the units.", level=Level.PRINCIPLE), reason="before").id
    before = lib.revision()
    lib.begin_run("batch", kind="import", config={})
    lib.begin_run("other", kind="learn", config={})
    added = lib.add(make("Always answer as a percentage.", level=Level.PRINCIPLE), reason="b", run_id="batch").id
    lib.edit(old, reason="b", run_id="batch", content="Check the units, then answer as a percentage.")
    beside = lib.add(make("Round only at the end."), reason="o", run_id="other").id  # inside the range, not ours
    child = lib.add(make("A case.", level=Level.CASE, parent_id=added), reason="b", run_id="batch").id
    after = lib.revision()
    later = lib.add(make("Read every figure given."), reason="a later writer").id  # after the batch
    lib.edit(child, reason="a later writer", content="A case, corrected by someone else.")

    reverted = revert(lib, before, after, runs={"batch"}, reason="harmful")

    now = {e.id: e for e in lib.list()}
    assert added not in now  # added by the batch: gone
    assert now[old].content == "Check the units."  # edited by the batch: back
    assert beside in now and later in now  # the other run's and the later writer's: kept
    assert child in now and now[child].content == "A case, corrected by someone else."  # changed since: kept
    assert reverted.kept == [child]
    assert {e.id for e in reverted.undone.added} == {added}
    assert [old] == [b.id for b, _ in reverted.undone.changed]
    assert lib.runs("rollback")[0].run_id == reverted.run_id  # logged, history kept
    assert any(ev.action == Action.DELETE and ev.experience_id == added for ev in lib.events(run_id=reverted.run_id))


def test_revert_without_runs_undoes_the_whole_range_and_nothing_after(lib: Library) -> None:
    from flexlearn.library.history import revert

    before = lib.revision()
    first = lib.add(make("One."), reason="r").id
    gone = lib.add(make("Two."), reason="r").id
    lib.delete(first, reason="r")
    after = lib.revision()
    later = lib.add(make("Three."), reason="later").id
    revert(lib, before, after)
    assert {e.id for e in lib.list()} == {later}
    assert gone not in {e.id for e in lib.list()}
