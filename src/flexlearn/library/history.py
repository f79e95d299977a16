"""A library's versions, read from its event log: list them, compare two, and roll back to one.

Every change to an entry is logged with its before/after snapshot in the same transaction as the change, so the
log already holds every state the library has been in. A **version** is one absorbed batch: the consecutive
events of one learned problem, one recorded outcome, one import or one rollback (one run and problem), or one
manual edit; it is numbered by the seq of its last event, which is the library's `revision()` right after it.
Version 0 is the empty library.

A rollback never deletes history: it computes the state at the version (`state_at`) and writes the difference to
the current state as ordinary logged changes (deletes, re-adds with the same ids, edits), all in one transaction
and under a run of kind ``rollback``, so the log still tells what happened and a rollback can itself be rolled
back. Usage counters (retrieved, helped, hurt) are not logged: entries that survive keep theirs, re-added ones
start at zero.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flexlearn.errors import LibraryError
from flexlearn.experience import LEVEL_RANK, Action, Event, Experience, Level
from flexlearn.library.store import Library

# What an entry is, for comparing two states (not its counters or timestamps); status last.
_FIELDS = ("zone", "level", "title", "content", "examples", "parent_id", "status")


@dataclass
class Version:
    """One absorbed batch. `number` is the library's revision right after it."""

    number: int
    kind: str  # the run's kind (learn, record, import, rollback, ...), or the action of a manual change
    run_id: str
    problem_id: str | None
    created_at: float
    actions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.number,
            "kind": self.kind,
            "run_id": self.run_id,
            "problem_id": self.problem_id,
            "created_at": self.created_at,
            "actions": dict(self.actions),
        }


@dataclass
class Diff:
    """From one state to another: entries added, removed, and changed (before, after)."""

    added: list[Experience] = field(default_factory=list)
    removed: list[Experience] = field(default_factory=list)
    changed: list[tuple[Experience, Experience]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [e.to_dict() for e in self.added],
            "removed": [e.to_dict() for e in self.removed],
            "changed": [{"before": a.to_dict(), "after": b.to_dict()} for a, b in self.changed],
        }


def _batch_key(ev: Event) -> tuple[str, str | None] | None:
    # A manual change (no run) is a batch of its own.
    return None if not ev.run_id else (ev.run_id, ev.problem_id)


def versions(library: Library) -> list[Version]:
    """Every version, oldest first. Discards count in a version's actions but change no entry."""
    kinds = {run.run_id: run.kind for run in library.runs()}
    found: list[Version] = []
    key: tuple[str, str | None] | None = None
    for ev in library.events():
        this = _batch_key(ev)
        if found and this is not None and this == key:
            version = found[-1]
            version.number = ev.seq
        else:
            kind = kinds.get(ev.run_id, str(ev.action)) if ev.run_id else str(ev.action)
            version = Version(ev.seq, kind, ev.run_id, ev.problem_id, ev.created_at)
            found.append(version)
        version.actions[str(ev.action)] = version.actions.get(str(ev.action), 0) + 1
        key = this
    return found


def check_version(library: Library, number: int) -> int:
    """`number` if it names a version of `library` (0: the empty library), else LibraryError listing the range."""
    known = {v.number for v in versions(library)} | {0}
    if number not in known:
        latest = max(known)
        raise LibraryError(
            f"{number} is not a version of {library.location} (versions run from 0 to {latest}; "
            "flex library versions lists them)"
        )
    return number


def state_at(library: Library, number: int) -> dict[str, Experience]:
    """The entries as they stood right after version `number` (its revision), by id, from the log alone."""
    state: dict[str, Experience] = {}
    for ev in library.events():
        if ev.seq > number:
            break
        if ev.experience_id is None or ev.action == Action.DISCARD:
            continue
        if ev.action == Action.DELETE:
            state.pop(ev.experience_id, None)
            for id, entry in state.items():  # a deleted entry's children lose their parent
                if entry.parent_id == ev.experience_id:
                    state[id] = replace(entry, parent_id=None)
        elif ev.after is not None:
            state[ev.experience_id] = Experience.from_dict(ev.after)
    return state


def _current(library: Library) -> dict[str, Experience]:
    return {e.id: e for e in library.list()}


def _same(a: Experience, b: Experience) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in _FIELDS)


def _compare(old: dict[str, Experience], new: dict[str, Experience]) -> Diff:
    return Diff(
        added=[new[i] for i in new if i not in old],
        removed=[old[i] for i in old if i not in new],
        changed=[(old[i], new[i]) for i in old if i in new and not _same(old[i], new[i])],
    )


def diff(library: Library, a: int, b: int | None = None) -> Diff:
    """What changed from version `a` to version `b` (None: the library as it is now)."""
    old = state_at(library, check_version(library, a))
    new = _current(library) if b is None else state_at(library, check_version(library, b))
    return _compare(old, new)


def _rank(e: Experience) -> int:
    return LEVEL_RANK[Level(e.level)]


def materialize(library: Library, number: int, path: Path) -> Library:
    """A new library at `path` holding the entries as they stood at version `number` (same ids, zones, levels,
    texts, parents and statuses; counters at zero, a log of plain adds): a private copy to evaluate that version
    on without touching the real library."""
    entries = state_at(library, check_version(library, number))
    copy = Library.open(path)
    with copy.transaction():
        for entry in sorted(entries.values(), key=_rank):
            restored = replace(entry, retrieved=0, helped=0, hurt=0)
            if restored.parent_id not in entries:
                restored.parent_id = None
            copy.add(restored, reason=f"version {number} of {library.location}")
    return copy


def rollback(library: Library, number: int, *, reason: str = "") -> tuple[str, Diff]:
    """Bring the entries back to version `number`, as logged changes under a new run of kind ``rollback``; returns
    the run id and what was undone (the diff from the version to the state before the rollback)."""
    check_version(library, number)
    run_id = f"rollback-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    why = f"rollback to version {number}" + (f": {reason}" if reason else "")
    with library.transaction():
        target, current = state_at(library, number), _current(library)
        undone = _compare(target, current)
        library.begin_run(run_id, kind="rollback", config={"to": number, "reason": reason})
        for entry in undone.added:  # added since the version
            library.delete(entry.id, reason=why, run_id=run_id)
        back = list(undone.removed)
        # An entry whose quarantine was lifted (or set) since comes back by delete and re-add: status is not
        # editable, so that it changes only through approve and import.
        for before, after in undone.changed:
            if before.status != after.status:
                library.delete(after.id, reason=why, run_id=run_id)
                back.append(before)
        for entry in sorted(back, key=_rank):  # parents before their children
            restored = replace(entry, retrieved=0, helped=0, hurt=0)
            if restored.parent_id is not None and library.find(restored.parent_id) is None:
                restored.parent_id = None  # a parent the version itself no longer had
            library.add(restored, reason=why, run_id=run_id)
        for before, _ in sorted(undone.changed, key=lambda pair: _rank(pair[0])):
            now = library.get(before.id)
            fields = {f: getattr(before, f) for f in _FIELDS[:-1] if getattr(now, f) != getattr(before, f)}
            if fields.get("parent_id") is not None and library.find(fields["parent_id"]) is None:
                fields["parent_id"] = None
            if fields:
                library.edit(before.id, reason=why, run_id=run_id, **fields)
        library.finish_run(run_id, status="done")
    return run_id, undone


@dataclass
class Reverted:
    """What `revert` did: the rollback run, the entries brought back to their state before the batch, and those
    left as they are because a change made after the batch (another writer's) touched them too."""

    run_id: str
    undone: Diff
    kept: list[str] = field(default_factory=list)


def revert(library: Library, before: int, after: int, *, runs: set[str] | None = None, reason: str = "") -> Reverted:
    """Undo one batch: the changes logged after version `before` up to version `after` (only those of `runs`, when
    given), and nothing else. Each entry the batch touched goes back to its state right before the batch's first
    change to it; an entry changed again since the batch's last change to it (by a later batch or another writer
    meanwhile) is left as it is and named in `kept`. Changes made after `after`, or by other runs inside the range,
    stay: unlike `rollback`, which brings the whole library back to a version, this undoes only the batch. Logged
    as a run of kind ``rollback``, like `rollback`."""
    run_id = f"rollback-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    why = f"batch after version {before} up to {after} undone" + (f": {reason}" if reason else "")
    with library.transaction():
        first: dict[str, dict[str, Any] | None] = {}  # each entry the batch touched, before its first change to it
        later: set[str] = set()  # touched again, after the batch's last change to it, by events not the batch's
        for ev in library.events(since_seq=before):
            if ev.experience_id is None or ev.action == Action.DISCARD:
                continue
            ours = ev.seq <= after and (runs is None or ev.run_id in runs)
            if ours:
                first.setdefault(ev.experience_id, ev.before)
                later.discard(ev.experience_id)
            elif ev.experience_id in first:
                later.add(ev.experience_id)
        library.begin_run(run_id, kind="rollback", config={"from": before, "to": after, "reason": reason})
        undone, kept = Diff(), sorted(later)
        current = _current(library)
        targets = {id: first[id] for id in first if id not in later}
        for id, state in targets.items():  # added by the batch: deleted (their children lose the parent)
            if state is None and id in current:
                undone.added.append(current[id])
                library.delete(id, reason=why, run_id=run_id)
        back: list[Experience] = []
        edits: list[tuple[Experience, Experience]] = []
        for id, state in targets.items():
            if state is None:
                continue
            old = Experience.from_dict(state)
            now = current.get(id)
            if now is None:
                back.append(old)
                undone.removed.append(old)
            elif now.status != old.status:
                library.delete(id, reason=why, run_id=run_id)
                back.append(old)
                undone.changed.append((old, now))
            elif not _same(old, now):
                edits.append((old, now))
                undone.changed.append((old, now))
        for entry in sorted(back, key=_rank):  # parents before their children
            restored = replace(entry, retrieved=0, helped=0, hurt=0)
            if restored.parent_id is not None and library.find(restored.parent_id) is None:
                restored.parent_id = None
            library.add(restored, reason=why, run_id=run_id)
        for old, now in sorted(edits, key=lambda pair: _rank(pair[0])):
            fields = {f: getattr(old, f) for f in _FIELDS[:-1] if getattr(now, f) != getattr(old, f)}
            if fields.get("parent_id") is not None and library.find(fields["parent_id"]) is None:
                fields["parent_id"] = None
            library.edit(old.id, reason=why, run_id=run_id, **fields)
        library.finish_run(run_id, status="done")
    return Reverted(run_id, undone, kept)
