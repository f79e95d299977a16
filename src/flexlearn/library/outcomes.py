"""The outcome queue: outcomes of a user's own agent (`flexlearn.record(..., wait=False)`, the MCP server's record
tool) stored in the library file the moment they arrive, and absorbed later by `flexlearn.loop.absorber`.

An outcome is `queued` until absorbed: `absorbed` is set in the same transaction as the library changes absorbing
it caused (`mark_absorbed`, called inside that transaction), so a process killed at any moment leaves each outcome
either queued with none of its changes, or absorbed with all of them. An outcome whose absorbing fails (the model
cannot be reached) stays queued with the error and its attempts counted, and is `failed` after too many: kept, with
its error, until `requeue_failed` gives it another chance. Nothing is ever deleted from the queue.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flexlearn.errors import LibraryError
from flexlearn.library.base import LibraryBase
from flexlearn.library.rows import dumps, loads

QUEUED, ABSORBED, FAILED = "queued", "absorbed", "failed"
STATUSES = (QUEUED, ABSORBED, FAILED)
# Attempts (each failing at the model) after which an outcome is marked failed rather than tried again.
MAX_ATTEMPTS = 3


def new_record_run_id() -> str:
    """A run id of kind ``record``, unique enough for many outcomes recorded in one second."""
    return f"record-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def question_id(question: str) -> str:
    """The problem id an outcome takes when its caller names none: the same question, the same id."""
    return "q-" + hashlib.sha256(question.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Outcome:
    """One attempt of a user's own agent at a question, as `flexlearn.record` takes it. `category` names the kind of
    problem ("" for none); `extracted` is the answer the task read from the attempt, when a task was given.
    `guidance` holds the ids of the entries the agent was shown; they count as having helped or hurt."""

    question: str
    attempt: str
    correct: bool
    problem_id: str
    run_id: str
    answer: str | None = None
    feedback: str | None = None
    category: str = ""
    extracted: str | None = None
    actor: str = "external"
    guidance: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of(
        cls,
        question: str,
        attempt: str,
        *,
        correct: bool,
        answer: str | None = None,
        feedback: str | None = None,
        category: str = "",
        extracted: str | None = None,
        problem_id: str | None = None,
        run_id: str | None = None,
        actor: str = "external",
        guidance: Sequence[str] = (),
    ) -> Outcome:
        """An outcome with the defaults `record` gives: a problem id from the question, a new run id."""
        return cls(
            question=question,
            attempt=attempt,
            correct=bool(correct),
            problem_id=problem_id or question_id(question),
            run_id=run_id or new_record_run_id(),
            answer=answer,
            feedback=feedback,
            category=category,
            extracted=extracted,
            actor=actor,
            guidance=tuple(guidance),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "guidance": list(self.guidance)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "guidance": tuple(data.get("guidance", ()))})


@dataclass(frozen=True)
class QueuedOutcome:
    """An outcome in the queue, with where it stands. `result` is what absorbing it did (`actions`, the
    `experience_ids` it added or merged into), once absorbed; `error` the last failure, if any."""

    id: str
    outcome: Outcome
    status: str
    attempts: int
    error: str | None
    result: dict[str, Any] | None
    created_at: float
    updated_at: float
    absorbed_at: float | None


class OutcomeTaken(LibraryError):
    """The outcome is no longer queued: another absorber took it, or it was given up, since it was read."""


def _row(row: Any) -> QueuedOutcome:
    return QueuedOutcome(
        id=row["id"],
        outcome=Outcome.from_dict(json.loads(row["outcome"])),
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        result=loads(row["result"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        absorbed_at=row["absorbed_at"],
    )


class Outcomes(LibraryBase):
    """The outcome queue (a mixin of `Library`)."""

    def enqueue_outcome(self, outcome: Outcome) -> str:
        """Store `outcome` in the queue and return its id at once: one short write, no model call. It is durable
        when this returns (committed: to the file's write-ahead log, or on the server)."""
        if self.read_only:
            raise LibraryError(f"{self.location} is open read-only: it cannot queue an outcome")
        id = f"outcome-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
        now = time.time()
        with self.transaction():
            self._conn.execute(
                "INSERT INTO outcomes(id, status, outcome, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (id, QUEUED, dumps(outcome.to_dict()), now, now),
            )
        return id

    def outcome(self, id: str) -> QueuedOutcome | None:
        """The queued (or absorbed, or failed) outcome with this id, or None."""
        row = self._conn.execute("SELECT * FROM outcomes WHERE id = ?", (id,)).fetchone()
        return None if row is None else _row(row)

    def queued_outcomes(self, limit: int = 8, *, skip: Collection[str] = ()) -> list[QueuedOutcome]:
        """Up to `limit` outcomes waiting to be absorbed, oldest first, leaving out the ids in `skip` (those an
        absorber already tried in this pass)."""
        found: list[QueuedOutcome] = []
        rows = self._conn.execute("SELECT * FROM outcomes WHERE status = ? ORDER BY seq", (QUEUED,))
        for row in rows:
            if row["id"] not in skip:
                found.append(_row(row))
                if len(found) >= limit:
                    break
        return found

    def mark_absorbed(self, id: str, result: dict[str, Any]) -> None:
        """Mark a queued outcome absorbed, with what absorbing it did. Call it inside the transaction that applies
        the outcome's changes: both commit, or neither. OutcomeTaken when it is no longer queued (another
        absorber was first), which rolls that transaction back, so no outcome is ever applied twice."""
        now = time.time()
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE outcomes SET status = ?, result = ?, error = NULL, absorbed_at = ?, updated_at = ?"
                " WHERE id = ? AND status = ?",
                (ABSORBED, dumps(result), now, now, id, QUEUED),
            )
            if cur.rowcount == 0:
                found = self.outcome(id)
                state = "not in the queue" if found is None else f"{found.status} already"
                raise OutcomeTaken(f"outcome {id} is {state}")

    def mark_failed(self, id: str, error: str, *, max_attempts: int = MAX_ATTEMPTS) -> str:
        """Count one failed attempt at absorbing a queued outcome, keeping the error: it stays queued, to be tried
        again, until `max_attempts` have failed, and is then marked failed. Returns its status now."""
        with self.transaction():
            self._conn.execute(
                "UPDATE outcomes SET attempts = attempts + 1, error = ?, updated_at = ?,"
                " status = CASE WHEN attempts + 1 >= ? THEN ? ELSE status END WHERE id = ? AND status = ?",
                (error, time.time(), max_attempts, FAILED, id, QUEUED),
            )
            found = self.outcome(id)
        if found is None:
            raise LibraryError(f"no outcome {id!r} in {self.location}")
        return found.status

    def requeue_failed(self, ids: Sequence[str] | None = None) -> int:
        """Queue failed outcomes again (all of them, or those in `ids`) with their attempts reset; how many."""
        sql = "UPDATE outcomes SET status = ?, attempts = 0, updated_at = ? WHERE status = ?"
        params: list[Any] = [QUEUED, time.time(), FAILED]
        if ids is not None:
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            params += list(ids)
        with self.transaction():
            return self._conn.execute(sql, params).rowcount

    def queue_stats(self, errors: int = 5) -> dict[str, Any]:
        """What the queue holds: counts by status (every status present, even at 0), when the oldest queued outcome
        arrived (None when none waits), how many queued ones failed before (`retrying`), and the last `errors`
        outcomes that failed, newest first. Read in one snapshot."""
        with self.snapshot():
            counts = {status: 0 for status in STATUSES}
            counts.update(self._conn.execute("SELECT status, count(*) FROM outcomes GROUP BY 1").fetchall())
            oldest, retrying = self._conn.execute(
                "SELECT min(created_at), count(CASE WHEN attempts > 0 THEN 1 END) FROM outcomes WHERE status = ?",
                (QUEUED,),
            ).fetchone()
            rows = self._conn.execute(
                "SELECT id, status, attempts, error, updated_at FROM outcomes WHERE error IS NOT NULL"
                " ORDER BY updated_at DESC, seq DESC LIMIT ?",
                (errors,),
            ).fetchall()
        return {
            **counts,
            "oldest_queued_at": oldest,
            "retrying": retrying or 0,
            "errors": [dict(r) for r in rows],
        }
