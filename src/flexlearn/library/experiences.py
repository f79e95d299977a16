"""The experiences and their log: reading them, and every change (add, merge, discard, edit, delete, usage
counters), each logged with its reason in the same transaction as the change."""

from __future__ import annotations

import builtins
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from flexlearn.errors import LibraryError
from flexlearn.experience import LEVEL_RANK, Action, Event, Experience, Level, Status, Zone
from flexlearn.library.base import LibraryBase
from flexlearn.library.batch import Applied, Change, apply_changes
from flexlearn.library.rows import ENTRY_COLUMNS, dumps, filters, loads, to_experience
from flexlearn.library.shown import Shown
from flexlearn.library.text import clean_text

MAX_EXAMPLES = 5

# The blanks trimmed from both ends of a stored text before comparing it: space, tab, newline, carriage return.
_BLANKS = " \t\n\r"

# The duplicate check's key: an entry's zone, level and the first 64 characters of its trimmed text, in an index
# on that expression, which both engines keep current themselves (no column for a writer to forget). The blanks
# are a literal holding the characters themselves, which both SQL dialects read alike, so the query's expression
# is the index's text for text and each planner uses it. Derived: made when a writable connection first finds it
# missing (`index_texts`), not a schema version, so an older library still opens read-only.
_TRIMMED = f"trim(content, '{_BLANKS}')"
TEXT_INDEX = "experiences_text"
_TEXT_INDEX_SQL = f"CREATE INDEX IF NOT EXISTS {TEXT_INDEX} ON experiences(zone, level, substr({_TRIMMED}, 1, 64))"

_EDITABLE = frozenset({"title", "content", "examples", "zone", "level", "parent_id"})


def _check_link(parent_id: str, parent_level: Level, child_id: str, child_level: Level) -> None:
    # A parent must be strictly more general than its child, which also rules out cycles.
    if LEVEL_RANK[Level(parent_level)] >= LEVEL_RANK[Level(child_level)]:
        raise LibraryError(
            f"a {parent_level} ({parent_id!r}) cannot be the parent of a {child_level} ({child_id or 'new'!r}):"
            " a parent must be more general than its child"
        )


class Experiences(LibraryBase):
    """Experiences and the event log (a mixin of `Library`)."""

    # -- reads --------------------------------------------------------------------------------------------

    def find(self, id: str) -> Experience | None:
        """The experience with this id, or None."""
        row = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM experiences WHERE id = ?", (id,)).fetchone()
        return None if row is None else to_experience(row)

    def find_many(self, ids: Iterable[str]) -> dict[str, Experience]:
        """The experiences with these ids, by id, in one query; ids not in the library are left out."""
        ids = builtins.list(dict.fromkeys(ids))
        if not ids:
            return {}
        rows = self._conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM experiences WHERE id IN ({', '.join('?' * len(ids))})", ids
        )
        return {r["id"]: to_experience(r) for r in rows}

    def find_retrievable(self, ids: Iterable[str]) -> dict[str, Experience]:
        """Like `find_many`, but only the entries retrieval may show a model: quarantined ones are left out.
        Every retriever resolves its hits through this (or filters on `status` itself)."""
        found = self.find_many(ids)
        return {id: e for id, e in found.items() if e.status == Status.ACTIVE}

    def id_with_text(self, zone: str, level: str, text: str) -> str | None:
        """The id of an entry of this zone and level whose text is `text` (surrounding whitespace aside), or None."""
        text = text.strip()
        row = self._conn.execute(
            f"SELECT id FROM experiences WHERE zone = ? AND level = ? AND substr({_TRIMMED}, 1, 64) = substr(?, 1, 64)"
            f" AND {_TRIMMED} = ? LIMIT 1",
            (str(zone), str(level), text, text),
        ).fetchone()
        return None if row is None else str(row[0])

    def index_texts(self) -> None:
        """Make the duplicate check's index (`TEXT_INDEX`) where it is missing: once per library, under the writer
        lock so that two processes opening it at once make it once. Without it the check reads every entry of a
        zone and level inside the writer lock (milliseconds at 10k entries, a large share of a second at 1M)."""
        if self._conn.read_only or self._conn.has_index(TEXT_INDEX):
            return
        with self.transaction():
            self._conn.execute(_TEXT_INDEX_SQL)

    def shown(self) -> Shown:
        """The entries a model may read (the active ones): the reader every prompt-building component takes."""
        return Shown(self)

    def quarantined(self) -> builtins.list[Experience]:
        """The entries waiting for approval (imported without `--trust`), in insertion order."""
        rows = self._conn.execute(
            f"SELECT {ENTRY_COLUMNS} FROM experiences WHERE status = ? ORDER BY seq", (str(Status.QUARANTINED),)
        )
        return [to_experience(r) for r in rows]

    def get(self, id: str) -> Experience:
        """The experience with this id; LibraryError if there is none."""
        exp = self.find(id)
        if exp is None:
            raise LibraryError(f"no experience with id {id!r} in {self.location}")
        return exp

    def list(self, *, zone: Zone | str | None = None, level: Level | str | None = None) -> builtins.list[Experience]:
        """All experiences, optionally of one zone and/or level, in insertion order."""
        where, params = filters(zone, level)
        rows = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM experiences WHERE 1 = 1{where} ORDER BY seq", params)
        return [to_experience(r) for r in rows]

    def count(self, *, zone: Zone | str | None = None, level: Level | str | None = None) -> int:
        """How many experiences there are, optionally of one zone and/or level."""
        where, params = filters(zone, level)
        return self._conn.execute(f"SELECT count(*) FROM experiences WHERE 1 = 1{where}", params).fetchone()[0]

    def children(self, id: str) -> builtins.list[Experience]:
        """The experiences whose parent is `id`, in insertion order."""
        rows = self._conn.execute(f"SELECT {ENTRY_COLUMNS} FROM experiences WHERE parent_id = ? ORDER BY seq", (id,))
        return [to_experience(r) for r in rows]

    def events(self, *, run_id: str | None = None, since_seq: int = 0) -> builtins.list[Event]:
        """The log, in order: events after `since_seq`, optionally of one run."""
        sql, params = "SELECT * FROM events WHERE seq > ?", [since_seq]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        return [
            Event(
                seq=r["seq"],
                action=Action(r["action"]),
                experience_id=r["experience_id"],
                reason=r["reason"],
                run_id=r["run_id"],
                problem_id=r["problem_id"],
                candidate=loads(r["candidate"]),
                before=loads(r["before"]),
                after=loads(r["after"]),
                created_at=r["created_at"],
            )
            for r in self._conn.execute(sql + " ORDER BY seq", params)
        ]

    def revision(self) -> int:
        """A number that grows with every logged change (the seq of the last event; 0 for a new library).

        Every change to an experience's text, zone, level or parent is logged, so something derived from the
        experiences (a search index kept beside the file) is up to date exactly when it was built at this
        revision, and `events(since_seq=...)` lists what it missed. Read it outside a write transaction: a
        rolled-back one gives its seqs back. Usage counters (`record_retrieval`, `record_outcome`) are not
        logged and do not move it.
        """
        return self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]

    # -- writes -------------------------------------------------------------------------------------------

    def content_hash(self) -> str:
        """sha256 over what every entry teaches (id, zone, level, title, content, examples, parent, status, in id
        order): equal for two files holding the same entries, whatever their logs, page layout or usage counters
        (which every retrieval moves). Read in one snapshot."""
        digest = hashlib.sha256()
        with self.snapshot():
            rows = self._conn.execute(
                "SELECT id, zone, level, title, content, examples, parent_id, status FROM experiences ORDER BY id"
            )
            for row in rows:
                digest.update(json.dumps(tuple(row), ensure_ascii=False).encode() + b"\n")
        return digest.hexdigest()

    def _log(
        self,
        action: Action,
        experience_id: str | None,
        *,
        reason: str,
        run_id: str,
        problem_id: str | None,
        candidate: Experience | None = None,
        before: Experience | None = None,
        after: Experience | None = None,
    ) -> None:
        self._conn.execute(
            "INSERT INTO events(action, experience_id, reason, run_id, problem_id, candidate, before, after,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(action),
                experience_id,
                reason,
                run_id,
                problem_id,
                *(None if e is None else dumps(e.to_dict()) for e in (candidate, before, after)),
                time.time(),
            ),
        )

    def _check_parent(self, id: str, level: Level, parent_id: str | None) -> None:
        if parent_id is None:
            return
        parent = self.find(parent_id)
        if parent is None:
            raise LibraryError(f"parent {parent_id!r} of {id or 'new experience'!r} is not in the library")
        _check_link(parent_id, parent.level, id, level)

    def _free_id(self, base: str) -> str:
        id, n = base, 1
        while self.find(id) is not None:
            n += 1
            id = f"{base}-{n}"
        return id

    def add(
        self,
        exp: Experience,
        *,
        reason: str,
        run_id: str = "",
        problem_id: str | None = None,
        action: Action = Action.ADD,
    ) -> Experience:
        """Store a new experience and log it. Returns the stored copy, and sets `exp.id` to its id.

        Without an id, the experience gets `exp.content_id()`, suffixed `-2`, `-3`... if that is taken (even
        by an identical entry: callers that want to skip duplicates check `find` first). An explicit id that
        is taken is an error. Examples beyond `MAX_EXAMPLES` are dropped. The parent, if any, must exist and
        be more general.
        """
        exp.title, exp.content = clean_text(exp.title), clean_text(exp.content)
        exp.examples = [clean_text(str(x)) for x in exp.examples]
        with self.transaction():
            if exp.id and self.find(exp.id) is not None:
                raise LibraryError(f"an experience with id {exp.id!r} already exists in {self.location}")
            id = exp.id or self._free_id(exp.content_id())
            self._check_parent(id, exp.level, exp.parent_id)
            self._conn.execute(
                "INSERT INTO experiences(id, zone, level, title, content, examples, provenance, parent_id,"
                " retrieved, helped, hurt, created_at, updated_at, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    id,
                    str(Zone(exp.zone)),
                    str(Level(exp.level)),
                    exp.title,
                    exp.content,
                    dumps([str(x) for x in exp.examples[:MAX_EXAMPLES]]),
                    dumps(exp.to_dict()["provenance"]),
                    exp.parent_id,
                    exp.retrieved,
                    exp.helped,
                    exp.hurt,
                    exp.created_at,
                    exp.updated_at,
                    str(Status(exp.status)),
                ),
            )
            stored = self.get(id)
            self._log(action, id, reason=reason, run_id=run_id, problem_id=problem_id, candidate=stored, after=stored)
        exp.id = id
        return stored

    def merge(
        self,
        target_id: str,
        *,
        content: str,
        examples: Sequence[str] | None,
        candidate: Experience,
        reason: str,
        run_id: str = "",
        problem_id: str | None = None,
    ) -> Experience:
        """Fold `candidate` into an existing experience: its content becomes `content`; its examples become
        `examples` if given, else its own followed by the candidate's (no repeats); either way at most
        `MAX_EXAMPLES`. The candidate's problem ids join the target's provenance. Returns the merged entry."""
        with self.transaction():
            before = self.get(target_id)
            new_examples = list(examples) if examples is not None else [*before.examples, *candidate.examples]
            problem_ids = [*before.provenance.problem_ids, *candidate.provenance.problem_ids]
            provenance = replace(before.provenance, problem_ids=list(dict.fromkeys(problem_ids)))
            self._conn.execute(
                "UPDATE experiences SET content = ?, examples = ?, provenance = ?, updated_at = ? WHERE id = ?",
                (
                    clean_text(content),
                    dumps([clean_text(str(x)) for x in dict.fromkeys(new_examples)][:MAX_EXAMPLES]),
                    dumps(replace(before, provenance=provenance).to_dict()["provenance"]),
                    time.time(),
                    target_id,
                ),
            )
            after = self.get(target_id)
            self._log(
                Action.MERGE,
                target_id,
                reason=reason,
                run_id=run_id,
                problem_id=problem_id,
                candidate=candidate,
                before=before,
                after=after,
            )
        return after

    def apply(
        self,
        changes: Sequence[Change],
        *,
        order: Sequence[int] | None = None,
        run_id: str = "",
        problem_id: str | None = None,
    ) -> builtins.list[Applied]:
        """Apply a batch of updater decisions in one transaction, keeping the library's invariants whatever they
        say (no two entries of a zone and level with one text; a merge into a removed entry adds; parents link to
        what their parent candidate became): see `flexlearn.library.batch`. `order` puts parents first (default:
        as given). One `Applied` per change, by index."""
        return apply_changes(
            self, changes, order=range(len(changes)) if order is None else order, run_id=run_id, problem_id=problem_id
        )

    def discard(self, candidate: Experience, *, reason: str, run_id: str = "", problem_id: str | None = None) -> None:
        """Log that a candidate was judged not worth keeping. The library itself does not change."""
        with self.transaction():
            self._log(
                Action.DISCARD,
                candidate.id or None,
                reason=reason,
                run_id=run_id,
                problem_id=problem_id,
                candidate=candidate,
            )

    def edit(self, id: str, /, *, reason: str, run_id: str = "", **fields: Any) -> Experience:
        """Change some of title, content, examples, zone, level, parent_id; log it; return the result.
        The id stays the same: it names the entry, it is not recomputed from the new text."""
        unknown = set(fields) - _EDITABLE
        if unknown or not fields:
            raise LibraryError(f"edit takes some of {sorted(_EDITABLE)}, not {sorted(unknown) or 'nothing'}")
        with self.transaction():
            before = self.get(id)
            try:
                after = replace(before, **fields, updated_at=time.time())
                after.zone, after.level = Zone(after.zone), Level(after.level)
            except ValueError as e:
                raise LibraryError(f"cannot edit {id!r}: {e}") from e
            self._check_parent(id, after.level, after.parent_id)
            for child in self.children(id):
                _check_link(id, after.level, child.id, child.level)
            self._conn.execute(
                "UPDATE experiences SET title = ?, content = ?, examples = ?, zone = ?, level = ?, parent_id = ?,"
                " updated_at = ? WHERE id = ?",
                (
                    clean_text(after.title),
                    clean_text(after.content),
                    dumps([clean_text(str(x)) for x in after.examples[:MAX_EXAMPLES]]),
                    str(after.zone),
                    str(after.level),
                    after.parent_id,
                    after.updated_at,
                    id,
                ),
            )
            after = self.get(id)
            self._log(Action.EDIT, id, reason=reason, run_id=run_id, problem_id=None, before=before, after=after)
        return after

    def approve(self, id: str, *, reason: str = "approved") -> Experience:
        """Release a quarantined entry to retrieval, and log it (an `approve` event, so anything that catches up
        by `revision` sees it). Approving an active entry is an error: there is nothing to release."""
        with self.transaction():
            before = self.get(id)
            if before.status != Status.QUARANTINED:
                raise LibraryError(f"{id!r} is not in quarantine (status {before.status})")
            self._conn.execute(
                "UPDATE experiences SET status = ?, updated_at = ? WHERE id = ?", (str(Status.ACTIVE), time.time(), id)
            )
            after = self.get(id)
            self._log(Action.APPROVE, id, reason=reason, run_id="", problem_id=None, before=before, after=after)
        return after

    def set_parent(self, id: str, parent_id: str | None) -> Experience:
        """Attach `id` under `parent_id` (or detach it with None). Logged as an edit."""
        return self.edit(id, reason=f"set parent to {parent_id}", parent_id=parent_id)

    def delete(self, id: str, *, reason: str, run_id: str = "") -> None:
        """Remove an experience and log it; its children lose their parent (they are not deleted)."""
        with self.transaction():
            before = self.get(id)
            self._conn.execute("DELETE FROM experiences WHERE id = ?", (id,))
            self._log(Action.DELETE, id, reason=reason, run_id=run_id, problem_id=None, before=before)

    def record_retrieval(self, ids: Iterable[str]) -> None:
        """Count one retrieval per id given, so an id listed twice (shown for two problems) counts twice.
        Unknown ids are ignored: they may have been deleted since."""
        self._bump("retrieved", ids)

    def record_outcome(self, ids: Iterable[str], helped: bool) -> None:
        """Count, per id given, whether the experiences shown for a problem helped (the answer was right)
        or hurt."""
        self._bump("helped" if helped else "hurt", ids)

    def _bump(self, column: str, ids: Iterable[str]) -> None:
        with self.transaction():
            self._conn.executemany(
                f"UPDATE experiences SET {column} = {column} + ? WHERE id = ?",
                [(n, i) for i, n in Counter(ids).items()],
            )
