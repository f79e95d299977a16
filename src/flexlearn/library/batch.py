"""Applying one batch of updater decisions, with the library's own invariants kept whatever the decisions say:

- no two entries of one zone and level share a text: an add that repeats a stored text becomes a discard naming
  the entry that covers it, and so does a merge that would turn its target into a copy of another entry;
- a merge into an entry that is gone (another process deleted it since the updater decided) becomes an add;
- the hierarchy holds: a candidate's parent is the entry its parent candidate became (added, merged into, or the
  entry that covers it), linked only when that entry is more general.

Every change, and every rewrite of a decision above with its reason, is logged in one transaction (the caller
may widen it to take its own records along, as learn does with the problem's done mark).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from flexlearn.experience import LEVEL_RANK, Action, Experience, Level
from flexlearn.library.text import clean_text

if TYPE_CHECKING:
    from flexlearn.library.experiences import Experiences


@dataclass
class Change:
    """One decision about one candidate: add it, merge it into `target` (whose text becomes `merged_content`), or
    discard it (`target`, when given, is the entry that already covers it). `parent` is the index, in the same
    batch, of the more general candidate this one was distilled under."""

    candidate: Experience
    action: Action
    reason: str
    target: str | None = None
    merged_content: str = ""
    parent: int | None = None


@dataclass
class Applied:
    """What became of one change: the action taken (it may differ from the one asked, with the reason why), and
    the entry the candidate now lives in (added, merged into, or covering it; None for a plain discard)."""

    action: Action
    reason: str
    target: str | None
    entry_id: str | None


def text_key(exp: Experience) -> tuple[str, str, str]:
    """What makes two entries the same entry: zone, level and cleaned text."""
    return (str(exp.zone), str(exp.level), clean_text(exp.content).strip())


def twin(library: Experiences, exp: Experience) -> str | None:
    """The id of a stored entry of `exp`'s zone and level with its text, or None. The id its text would take is
    looked up first (the common case), then the entries of its zone and level."""
    key = text_key(exp)
    stored = library.find(exp.content_id())
    if stored is not None and text_key(stored) == key:
        return stored.id
    return library.id_with_text(key[0], key[1], key[2])


def _parent(library: Experiences, level: Level, entry_id: str | None) -> str | None:
    # The entry a parent candidate became may sit at any level (the updater merges across levels): link only to a
    # more general one.
    if entry_id is None:
        return None
    return entry_id if LEVEL_RANK[library.get(entry_id).level] < LEVEL_RANK[Level(level)] else None


def _settle(library: Experiences, change: Change) -> Change:
    """The decision that keeps the invariants, with the reason when it is not the one asked for."""
    if change.action == Action.MERGE and (change.target is None or library.find(change.target) is None):
        change = replace(change, action=Action.ADD, reason=f"added: {change.target} was removed before the merge")
    if change.action == Action.ADD:
        copy = twin(library, change.candidate)
        if copy is not None:
            return replace(change, action=Action.DISCARD, reason=f"discarded: exact duplicate of {copy}", target=copy)
    if change.action == Action.MERGE:
        # A small updater tends to write the text of the entry it was shown: the candidate is then covered by it.
        copy = twin(library, replace(change.candidate, content=change.merged_content))
        if copy is not None and copy != change.target:
            reason = f"discarded: merging into {change.target} would repeat {copy}, which covers it"
            return replace(change, action=Action.DISCARD, reason=reason, target=copy)
    return change


def apply_changes(
    library: Experiences, changes: Sequence[Change], *, order: Sequence[int], run_id: str, problem_id: str | None
) -> list[Applied]:
    """Apply `changes` in `order` (parents before their children) in one transaction; one `Applied` per change,
    by index."""
    if sorted(order) != list(range(len(changes))):
        raise ValueError(f"order must name each of the {len(changes)} changes once, not {list(order)}")
    applied: dict[int, Applied] = {}
    with library.transaction():
        for i in order:
            change = _settle(library, changes[i])
            candidate = change.candidate
            entry: str | None = None
            if change.action == Action.ADD:
                parent = applied[change.parent].entry_id if change.parent in applied else None
                candidate.parent_id = _parent(library, candidate.level, parent)
                entry = library.add(candidate, reason=change.reason, run_id=run_id, problem_id=problem_id).id
            elif change.action == Action.MERGE:
                assert change.target is not None
                library.merge(
                    change.target,
                    content=change.merged_content,
                    examples=None,
                    candidate=candidate,
                    reason=change.reason,
                    run_id=run_id,
                    problem_id=problem_id,
                )
                entry = change.target
            else:
                library.discard(candidate, reason=change.reason, run_id=run_id, problem_id=problem_id)
                if change.target and library.find(change.target) is not None:
                    entry = change.target
            applied[i] = Applied(change.action, change.reason, change.target, entry)
    return [applied[i] for i in range(len(changes))]
