"""`Library.apply`: a batch of updater decisions, with the library's invariants kept whatever the decisions say."""

from __future__ import annotations

import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Level
from flexlearn.library.batch import Change
from flexlearn.library.store import Library
from tests.library.builders import make


def test_an_add_repeating_a_stored_text_is_discarded_as_its_duplicate(lib: Library) -> None:
    stored = lib.add(make("Reduce mod 9 before dividing.", title="modular"), reason="r")
    # Another title and surrounding whitespace: the text is what makes an entry (its id would differ).
    copy = make("  Reduce mod 9 before dividing.\n", title="arithmetic")
    [done] = lib.apply([Change(copy, Action.ADD, "new")], run_id="run", problem_id="p1")
    assert (done.action, done.target, done.entry_id) == (Action.DISCARD, stored.id, stored.id)
    assert done.reason == f"discarded: exact duplicate of {stored.id}"
    assert lib.count() == 1
    event = lib.events()[-1]
    assert (event.action, event.reason, event.run_id, event.problem_id) == (Action.DISCARD, done.reason, "run", "p1")


def test_the_same_text_twice_in_one_batch_is_stored_once(lib: Library) -> None:
    changes = [Change(make("Check units."), Action.ADD, "a"), Change(make("Check units.", title="t2"), Action.ADD, "b")]
    first, second = lib.apply(changes)
    assert first.action == Action.ADD and second.action == Action.DISCARD
    assert second.entry_id == first.entry_id and lib.count() == 1


def test_the_same_text_in_another_zone_or_level_is_another_entry(lib: Library) -> None:
    lib.add(make("Check units."), reason="r")
    [done] = lib.apply([Change(make("Check units.", level=Level.CASE), Action.ADD, "r")])
    assert done.action == Action.ADD and lib.count() == 2


def test_a_merge_into_a_removed_entry_adds_the_candidate(lib: Library) -> None:
    [done] = lib.apply([Change(make("Draw the figure."), Action.MERGE, "m", target="gone", merged_content="x")])
    assert done.action == Action.ADD and done.reason == "added: gone was removed before the merge"
    assert lib.get(done.entry_id or "").content == "Draw the figure."


def test_a_merge_that_would_copy_another_entry_is_discarded_as_covered_by_it(lib: Library) -> None:
    target = lib.add(make("Estimate first."), reason="r")
    other = lib.add(make("Check the sign of the answer."), reason="r")
    change = Change(make("Mind signs."), Action.MERGE, "m", target=target.id, merged_content=other.content)
    [done] = lib.apply([change])
    assert (done.action, done.target, done.entry_id) == (Action.DISCARD, other.id, other.id)
    assert lib.get(target.id).content == "Estimate first."  # the target is left as it was


def test_children_link_to_what_their_parent_candidate_became(lib: Library) -> None:
    principle = lib.add(make("Verify each step.", level=Level.PRINCIPLE), reason="r")
    changes = [
        # The candidate principle is merged into the stored one ...
        Change(
            make("Check every step.", level=Level.PRINCIPLE),
            Action.MERGE,
            "m",
            target=principle.id,
            merged_content="Verify each step; check units.",
        ),
        # ... so the pattern distilled under it links to that entry,
        Change(make("Recompute sums backwards."), Action.ADD, "a", parent=0),
        # and the case under the pattern to the new pattern.
        Change(make("12 + 30 = 42, checked as 42 - 30.", level=Level.CASE), Action.ADD, "a", parent=1),
    ]
    merged, pattern, case = lib.apply(changes, order=[0, 1, 2])
    assert merged.entry_id == principle.id
    assert lib.get(pattern.entry_id or "").parent_id == principle.id
    assert lib.get(case.entry_id or "").parent_id == pattern.entry_id


def test_a_parent_that_became_a_less_general_entry_is_not_linked(lib: Library) -> None:
    case = lib.add(make("A worked case.", level=Level.CASE), reason="r")
    changes = [
        Change(make("A worked case.", level=Level.PATTERN), Action.DISCARD, "covered", target=case.id),
        Change(make("Another worked case.", level=Level.CASE), Action.ADD, "a", parent=0),
    ]
    _, child = lib.apply(changes)
    assert lib.get(child.entry_id or "").parent_id is None


def test_a_batch_is_all_or_nothing(lib: Library) -> None:
    taken = lib.add(make("Taken."), reason="r")
    clash = make("Clashing id.")
    clash.id = taken.id
    changes = [Change(make("Fine."), Action.ADD, "a"), Change(clash, Action.ADD, "b")]
    with pytest.raises(LibraryError, match="already exists"):
        lib.apply(changes)
    assert lib.count() == 1 and [e.action for e in lib.events()] == [Action.ADD]


def test_order_must_name_every_change_once(lib: Library) -> None:
    with pytest.raises(ValueError, match="each of the 2 changes once"):
        lib.apply([Change(make("a"), Action.ADD, "r"), Change(make("b"), Action.ADD, "r")], order=[0, 0])
