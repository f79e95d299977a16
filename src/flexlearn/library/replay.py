"""Rebuild a library as it stood after its first N training problems, from its event log.

The log records every add, merge, discard, edit and delete with before/after snapshots, so a library can be
replayed to any size without calling a model: the scaling-law curve (accuracy against library size) evaluates
such replays. Problems count in the order they were first absorbed (first event), across runs. Events with no
problem (imports, manual edits) belong to every size; one that touches an entry not present at that size is
skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Event, Experience
from flexlearn.library.store import Library


def absorbed(library: Library) -> list[tuple[str, str]]:
    """(run id, problem id) of every problem with at least one event, in the order first absorbed."""
    seen: dict[tuple[str, str], None] = {}
    for ev in library.events():
        if ev.problem_id is not None:
            seen.setdefault((ev.run_id, ev.problem_id), None)
    return list(seen)


@dataclass
class Replayed:
    problems: int
    experiences: int
    events: int


def _snapshot(data: dict | None) -> Experience:
    if data is None:
        raise LibraryError("an event in the log has no snapshot to replay")
    exp = Experience.from_dict(data)
    # Usage counters come from later evaluations, not from learning: a replayed library starts clean.
    exp.retrieved = exp.helped = exp.hurt = 0
    return exp


def _apply(dest: Library, ev: Event) -> bool:
    """Apply one event to `dest`; False when it touches an entry that `dest` does not have."""
    if ev.action in (Action.ADD, Action.IMPORT):
        exp = _snapshot(ev.after)
        if dest.find(exp.id) is not None or (exp.parent_id and dest.find(exp.parent_id) is None):
            return False
        dest.add(exp, reason=ev.reason, run_id=ev.run_id, problem_id=ev.problem_id, action=ev.action)
    elif ev.action == Action.MERGE:
        after = _snapshot(ev.after)
        if dest.find(after.id) is None:
            return False
        dest.merge(
            after.id,
            content=after.content,
            examples=after.examples,
            candidate=_snapshot(ev.candidate),
            reason=ev.reason,
            run_id=ev.run_id,
            problem_id=ev.problem_id,
        )
    elif ev.action == Action.DISCARD:
        dest.discard(_snapshot(ev.candidate), reason=ev.reason, run_id=ev.run_id, problem_id=ev.problem_id)
    elif ev.action == Action.EDIT:
        after = _snapshot(ev.after)
        if dest.find(after.id) is None or (after.parent_id and dest.find(after.parent_id) is None):
            return False
        dest.edit(
            after.id,
            reason=ev.reason,
            title=after.title,
            content=after.content,
            examples=after.examples,
            zone=after.zone,
            level=after.level,
            parent_id=after.parent_id,
        )
    elif ev.action == Action.DELETE:
        if ev.experience_id is None or dest.find(ev.experience_id) is None:
            return False
        dest.delete(ev.experience_id, reason=ev.reason)
    elif ev.action == Action.APPROVE:
        # An imported entry replays into quarantine (its snapshot says so) and is released here, as it was.
        if ev.experience_id is None or dest.find(ev.experience_id) is None:
            return False
        dest.approve(ev.experience_id, reason=ev.reason)
    return True


def replay(source: Library, dest: Library, *, problems: int | None = None) -> Replayed:
    """Replay `source`'s log into the empty library `dest`, keeping the first `problems` absorbed problems
    (all of them when None). One transaction: a failure leaves `dest` empty."""
    if dest.count() or dest.events():
        raise LibraryError(f"replay needs an empty library, and {dest.location} is not")
    order = absorbed(source)
    keep = set(order if problems is None else order[:problems])
    applied = 0
    with dest.transaction():
        for ev in source.events():
            if ev.problem_id is not None and (ev.run_id, ev.problem_id) not in keep:
                continue
            applied += _apply(dest, ev)
    return Replayed(problems=len(keep), experiences=dest.count(), events=applied)
