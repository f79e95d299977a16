"""The absorber: outcomes a user's own agent recorded without waiting (`flexlearn.record(..., wait=False)`, the MCP
server's record tool) are taken from the library's queue in batches, distilled and absorbed exactly as
`flexlearn.record` absorbs one (`learn_outcome`, through `learn_from_trajectory`), each marked absorbed in the same
transaction as the library changes it caused. A process killed at any moment therefore loses no queued outcome and
applies none twice: the next pass takes up what is still queued.

An outcome whose absorbing fails at the model stays queued with its error and is tried again on a later pass;
after `max_attempts` failures it is marked failed, kept with its error (`flex library queue` shows it).

`aabsorb` / `absorb` drain a queue once (the CLI's `flex library queue --absorb`); `Absorber` keeps draining in the
background of a long-running program (the MCP server), woken by each new outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from flexlearn._sync import run_sync
from flexlearn.errors import ModelError
from flexlearn.library.outcomes import ABSORBED, FAILED, MAX_ATTEMPTS, Outcome, OutcomeTaken, QueuedOutcome
from flexlearn.library.store import Library
from flexlearn.loop.absorb import Absorbed, learn_from_trajectory
from flexlearn.loop.agents import Agents
from flexlearn.models.base import ChatModel, Usage
from flexlearn.trajectory import StepRecord, Trajectory

BATCH_SIZE = 8
# Seconds before a background absorber tries again an outcome that failed at the model.
RETRY_AFTER_S = 30.0


@dataclass(frozen=True)
class Queued:
    """What `flexlearn.record(..., wait=False)` returns: the id of the outcome it queued. `Library.outcome(id)`
    says where the outcome stands (queued, absorbed with what it did, or failed with its error)."""

    id: str
    queued: bool = True


@dataclass
class AbsorbSummary:
    """One pass over a queue. `retried`: failed at the model and left queued for a later pass; `failed`: failed for
    the last time and marked failed; `taken`: absorbed by another absorber meanwhile; `remaining`: queued when the
    pass ended (those it left to retry included)."""

    absorbed: int = 0
    retried: int = 0
    failed: int = 0
    taken: int = 0
    remaining: int = 0
    actions: dict[str, int] = field(default_factory=lambda: {"add": 0, "merge": 0, "discard": 0})
    seconds: float = 0.0
    last_error: str | None = None
    retrying_ids: list[str] = field(default_factory=list)  # the `retried` ones

    @property
    def tried(self) -> int:
        return self.absorbed + self.retried + self.failed + self.taken


def _team(agents: Agents | ChatModel) -> Agents:
    return agents if isinstance(agents, Agents) else Agents(actor=agents)


async def learn_outcome(
    outcome: Outcome,
    *,
    agents: Agents,
    library: Library,
    review: bool = False,
    inside: Callable[[Absorbed], None] | None = None,
) -> Absorbed:
    """Distil one outcome and absorb it into `library` in one transaction, as run `outcome.run_id` of kind
    ``record`` (begun here, and marked done in that transaction). `review=True` adds its lessons in quarantine,
    merged into no entry, for `flex library review`. `inside` is called with the result inside the transaction,
    before it commits (the queue marks the outcome absorbed there). Only the distiller and the updater are called."""
    models = {"actor": outcome.actor, "distiller": agents.distiller.name, "updater": agents.updater.name}
    library.begin_run(outcome.run_id, kind="record", config={"task": outcome.category, "models": models})
    step = StepRecord(0, 0, outcome.attempt, outcome.extracted, outcome.correct, feedback=outcome.feedback or "")
    trajectory = Trajectory(outcome.problem_id, [step], Usage(), calls=0, guidance=list(outcome.guidance))

    def done(absorbed: Absorbed) -> None:
        library.finish_run(outcome.run_id, status="done")
        if inside is not None:
            inside(absorbed)

    return await learn_from_trajectory(
        trajectory,
        question=outcome.question,
        answer=outcome.answer if outcome.answer is not None else "unknown",
        category=outcome.category or "general",
        agents=agents,
        library=library,
        run_id=outcome.run_id,
        actor=outcome.actor,
        quarantine=review,
        inside=done,
    )


def _result(absorbed: Absorbed) -> dict[str, Any]:
    return {
        "run_id": absorbed.run_id,
        "problem_id": absorbed.problem_id,
        "solved": absorbed.solved,
        "actions": dict(absorbed.actions),
        "experience_ids": list(absorbed.experience_ids),
    }


async def _absorb_one(
    queued: QueuedOutcome, *, agents: Agents, library: Library, review: bool, max_attempts: int
) -> tuple[str, Absorbed | None, str | None]:
    """('absorbed', what it did, None), ('taken', None, None), or the status a failure left it in with the error."""
    try:
        absorbed = await learn_outcome(
            queued.outcome,
            agents=agents,
            library=library,
            review=review,
            inside=lambda a: library.mark_absorbed(queued.id, _result(a)),
        )
    except OutcomeTaken:
        return "taken", None, None
    except Exception as exc:  # any failure is counted against the outcome, kept with its error
        error = str(exc) if isinstance(exc, ModelError) else f"{type(exc).__name__}: {exc}"
        return library.mark_failed(queued.id, error, max_attempts=max_attempts), None, error
    return "absorbed", absorbed, None


async def aabsorb(
    library: Library,
    *,
    agents: Agents | ChatModel,
    batch_size: int = BATCH_SIZE,
    max_attempts: int = MAX_ATTEMPTS,
    review: bool = False,
    limit: int | None = None,
    skip: Collection[str] = (),
    on_progress: Callable[[AbsorbSummary], None] | None = None,
) -> AbsorbSummary:
    """Absorb what `library`'s queue holds, oldest first, `batch_size` outcomes at a time (those of a batch
    concurrently), each exactly as `flexlearn.record` absorbs one, and return the counts. Each queued outcome is
    tried once per call (one that fails stays queued for the next call, up to `max_attempts` failures); outcomes
    queued while it runs are taken too. `limit` stops after that many; `skip` leaves those ids for later.
    `review=True` adds the lessons in quarantine (see `learn_outcome`). `on_progress` is called after each
    outcome with the counts so far."""
    team = _team(agents)
    started = time.monotonic()
    summary = AbsorbSummary()
    tried: set[str] = set(skip)

    async def one(queued: QueuedOutcome) -> None:
        status, absorbed, error = await _absorb_one(
            queued, agents=team, library=library, review=review, max_attempts=max_attempts
        )
        if absorbed is not None:
            summary.absorbed += 1
            for action, n in absorbed.actions.items():
                summary.actions[action] = summary.actions.get(action, 0) + n
        elif status in ("taken", ABSORBED):  # absorbed elsewhere, before or after the failure here
            summary.taken += 1
        elif status == FAILED:
            summary.failed += 1
        else:
            summary.retried += 1
            summary.retrying_ids.append(queued.id)
        summary.last_error = error or summary.last_error
        if on_progress is not None:
            on_progress(summary)

    while limit is None or summary.tried < limit:
        room = max(1, batch_size) if limit is None else min(max(1, batch_size), limit - summary.tried)
        batch = library.queued_outcomes(room, skip=tried)
        if not batch:
            break
        tried.update(q.id for q in batch)
        await asyncio.gather(*(one(q) for q in batch))
    summary.remaining = library.queue_stats(errors=0)["queued"]
    summary.seconds = time.monotonic() - started
    return summary


def absorb(
    library: Library,
    *,
    agents: Agents | ChatModel,
    batch_size: int = BATCH_SIZE,
    max_attempts: int = MAX_ATTEMPTS,
    review: bool = False,
    limit: int | None = None,
    on_progress: Callable[[AbsorbSummary], None] | None = None,
) -> AbsorbSummary:
    """Blocking form of `aabsorb`, for scripts and notebooks (on flexlearn's own loop, as `flexlearn.record`)."""
    return run_sync(
        aabsorb(
            library,
            agents=agents,
            batch_size=batch_size,
            max_attempts=max_attempts,
            review=review,
            limit=limit,
            on_progress=on_progress,
        )
    )


class Absorber:
    """Drains a library's queue in the background of a long-running program: `await absorber.run()` in a task of
    the program's loop passes over the queue at once (outcomes queued while the program was down), again whenever
    `wake()` is called (after each enqueue), and every `retry_after` seconds while outcomes wait to be retried
    (one that failed is not tried again before then). Cancel the task to stop: an outcome under way stays queued,
    with nothing of it applied, and is absorbed on the next start. A pass that fails as a whole (the library cannot
    be written) is reported to `on_error` and tried again later; the task never ends on its own. `after_pass`, when
    given, is awaited with the version before each pass that changed the library (the regression gate)."""

    def __init__(
        self,
        library: Library,
        agents: Agents | ChatModel,
        *,
        batch_size: int = BATCH_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        review: bool = False,
        retry_after: float = RETRY_AFTER_S,
        on_error: Callable[[str], None] | None = None,
        after_pass: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.library = library
        self.agents = _team(agents)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.review = review
        self.retry_after = retry_after
        self.on_error = on_error
        # Called with the library's version before a pass that changed it (the regression gate, in flex mcp).
        self.after_pass = after_pass
        self.total = AbsorbSummary()
        self._wake = asyncio.Event()
        self._not_before: dict[str, float] = {}  # outcome id -> monotonic time before which it is not retried

    def wake(self) -> None:
        """Start a pass soon: something was queued."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            self._not_before = {id: t for id, t in self._not_before.items() if t > now}
            try:
                await self._pass()
            except Exception as exc:  # reported, and the next pass tries again
                if self.on_error is not None:
                    self.on_error(f"absorbing the outcome queue failed: {exc}")
                self._wake.clear()
                await asyncio.sleep(self.retry_after)
                continue
            timeout = min(self._not_before.values(), default=now + self.retry_after) - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, timeout))

    async def _pass(self) -> None:
        before = self.library.revision()
        summary = await aabsorb(
            self.library,
            agents=self.agents,
            batch_size=self.batch_size,
            max_attempts=self.max_attempts,
            review=self.review,
            skip=set(self._not_before),
        )
        retry_at = time.monotonic() + self.retry_after
        self._not_before.update(dict.fromkeys(summary.retrying_ids, retry_at))
        if summary.last_error and self.on_error is not None and (summary.retried or summary.failed):
            self.on_error(f"{summary.retried + summary.failed} outcomes failed to absorb: {summary.last_error}")
        for name in ("absorbed", "retried", "failed", "taken"):
            setattr(self.total, name, getattr(self.total, name) + getattr(summary, name))
        self.total.remaining = summary.remaining
        if self.after_pass is not None and summary.absorbed and self.library.revision() != before:
            await self.after_pass(before)
