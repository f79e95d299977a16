"""The training run: explore every problem, distil its trajectory, and let the updater fold the candidates into
the library.

Exploration, distillation and the updater's decisions run concurrently (up to `concurrency` problems at once,
the candidates of one problem decided together), each decision made against the library as it is then. Writes
go through one writer that takes finished problems in input order and only re-checks and applies: a decision the
library has since overtaken (an add that now repeats an entry word for word, a merge into or a discard against an
entry that is gone) is corrected before it is applied, so no two entries share a text and nothing merges into a
missing entry. A re-decision in the writer would hold every later write for a model call, so finished problems
waiting for the writer are re-checked early, concurrently, whenever a write touches the zone and level of one of
their candidates; the writer's own re-check then mostly finds them current. Each problem's writes and its "done"
mark are one transaction: a run killed at any moment resumes (`resume=True`) with every accepted experience kept
and no problem half-applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flexlearn.agents.tools import make_toolset
from flexlearn.errors import ModelError
from flexlearn.experience import Action, Experience
from flexlearn.library.store import Library
from flexlearn.loop.absorb import (
    Absorbed,
    Decided,
    apply,
    decide_candidates,
    needs_early_recheck,
    recheck,
)
from flexlearn.loop.agents import Agents
from flexlearn.loop.config import LearnConfig
from flexlearn.loop.executor import Executor, open_executor
from flexlearn.retrieval import get_retriever, select_guidance
from flexlearn.retrieval.base import Retriever
from flexlearn.retrieval.guidance import case_gate
from flexlearn.tasks.base import Problem, Task, problems_digest
from flexlearn.trajectory import Trajectory

DONE = ("solved", "unsolved")
# Problems worked on per call slot, by default. The problems that start last and need the longest chains of calls
# set when a run ends: the more problems under way, the sooner those chains start. benchmarks/throughput.py at 32
# (128 problems): 0.89-0.90 of the bound with 2 a slot, 0.95 with 4 or 8; at 8 the same with 2, 4 or 8, where
# more problems under way only meant up to 3% more updater re-checks.
PROBLEMS_PER_SLOT = 4


@dataclass
class Progress:
    done: int
    total: int
    solved: int
    failed: int
    added: int


@dataclass
class LearnSummary:
    run_id: str
    resumed: bool
    total: int
    skipped: int  # already done in an earlier, interrupted invocation of this run
    solved: int = 0
    unsolved: int = 0
    failed: int = 0
    actions: dict[str, int] = field(default_factory=lambda: {"add": 0, "merge": 0, "discard": 0})
    seconds: float = 0.0


@dataclass
class _Outcome:
    trajectory: Trajectory | None
    decided: Decided | None
    error: str | None = None


def new_run_id() -> str:
    return f"learn-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _resolve_run(
    library: Library,
    task: Task,
    problems: Sequence[Problem],
    source: str,
    resume: bool | str,
    models: dict[str, str],
) -> str:
    """A new run, or the one `resume` continues: a run id, or True for the newest unfinished run of this task on
    these problems (several learners may share one library, each with its own run)."""
    ids, digest = [p.id for p in problems], problems_digest(problems)
    if not resume:
        run_id = new_run_id()
        config = {"task": task.name, "source": source, "problem_ids": ids, "problems_digest": digest, "models": models}
        library.begin_run(run_id, kind="learn", config=config)
        return run_id
    run_id = library.resumable_run(
        "learn",
        task=task.name,
        problem_ids=ids,
        run_id=resume if isinstance(resume, str) else None,
        problems_digest=digest,
    )
    library.begin_run(run_id, kind="learn", config=library.run_config(run_id) or {})
    return run_id


async def learn(
    problems: Sequence[Problem],
    *,
    task: Task,
    agents: Agents,
    library: Library,
    config: LearnConfig | None = None,
    source: str = "",
    resume: bool | str = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> LearnSummary:
    config = config or LearnConfig()
    # An unknown retriever or tool fails here, not after the first exploration.
    retriever = get_retriever(config.retriever, library)
    tools = make_toolset(config.explore.tools, shown=library.shown(), retriever=retriever)
    # Where each problem's exploration and distillation run (`config.executor`), ready before the run is written.
    executor = await open_executor(config, task=task, agents=agents, pool=problems, tools=tools, library=library)
    try:
        return await _learn(
            problems,
            task=task,
            agents=agents,
            library=library,
            config=config,
            source=source,
            resume=resume,
            on_progress=on_progress,
            retriever=retriever,
            executor=executor,
        )
    finally:
        await executor.aclose()


async def _learn(
    problems: Sequence[Problem],
    *,
    task: Task,
    agents: Agents,
    library: Library,
    config: LearnConfig,
    source: str,
    resume: bool | str,
    on_progress: Callable[[Progress], None] | None,
    retriever: Retriever,
    executor: Executor,
) -> LearnSummary:
    started = time.monotonic()
    run_id = _resolve_run(library, task, problems, source, resume, agents.models())
    status = library.problem_status(run_id)
    todo = [p for p in problems if status.get(p.id) not in DONE]
    summary = LearnSummary(run_id, bool(resume), total=len(problems), skipped=len(problems) - len(todo))
    summary.solved = sum(1 for s in status.values() if s == "solved")
    summary.unsolved = sum(1 for s in status.values() if s == "unsolved")
    # The texts this run stored, by zone and level: what decisions made before they existed are checked against.
    # The revision of this run's last write into each zone and level, and the early re-checks in flight.
    touched: dict[tuple[str, str], int] = {}
    early: dict[asyncio.Task[_Outcome], asyncio.Task[None]] = {}

    async def recheck_early(decided: Decided) -> None:
        with contextlib.suppress(ModelError):  # the writer's own re-check asks again
            await recheck(decided, library=library, retriever=retriever, agents=agents, config=config)

    def start_early_rechecks() -> None:
        for _, job in window:
            if not job.done() or job.cancelled() or job.exception() is not None:
                continue
            if job in early and not early[job].done():
                continue
            decided = job.result().decided
            if decided is not None and needs_early_recheck(decided, touched):
                early[job] = asyncio.create_task(recheck_early(decided))

    async def work(problem: Problem) -> _Outcome:
        try:
            guidance: list[Experience] = []
            if config.explore_with_library:
                guidance = select_guidance(
                    retriever,
                    library,
                    task.render(problem),
                    budget_tokens=config.budget_tokens,
                    case_min_shared=case_gate(agents.actor.prompt_kind),
                    category=problem.category,
                )
            # Exploration and distillation: here, or on a Ray cluster.
            done = await executor.chain(problem, guidance=guidance, run_id=run_id)
            trajectory, candidates = done.trajectory, done.candidates
            decided = await decide_candidates(
                candidates, library=library, retriever=retriever, agents=agents, config=config
            )
            if needs_early_recheck(decided, touched):  # written to while the updater was deciding
                await recheck(decided, library=library, retriever=retriever, agents=agents, config=config)
            return _Outcome(trajectory, decided)
        except ModelError as exc:
            return _Outcome(None, None, error=str(exc))

    def report() -> None:
        if on_progress:
            # Problems done in an earlier invocation are already in solved/unsolved.
            done = summary.solved + summary.unsolved + summary.failed
            on_progress(Progress(done, summary.total, summary.solved, summary.failed, summary.actions["add"]))

    report()
    in_flight = config.problems_in_flight or PROBLEMS_PER_SLOT * max(1, config.concurrency)
    semaphore = asyncio.Semaphore(in_flight)

    async def bounded(problem: Problem) -> _Outcome:
        async with semaphore:
            return await work(problem)

    # A window of look-ahead keeps exploration busy while the writer works, without buffering the whole set. The
    # writer takes problems in the order they started, so the library a run leaves does not depend on which
    # problem happened to finish first (a killed run resumed ends as an uninterrupted one would).
    window: deque[tuple[Problem, asyncio.Task[_Outcome]]] = deque()
    pending = iter(todo)
    consecutive_failures = 0
    last_error: str | None = None
    try:
        while True:
            while len(window) < 2 * in_flight:
                problem = next(pending, None)
                if problem is None:
                    break
                window.append((problem, asyncio.create_task(bounded(problem))))
            if not window:
                break
            problem, job = window.popleft()
            outcome = await job
            absorbed: Absorbed | None = None
            if outcome.error is None:
                assert outcome.trajectory is not None and outcome.decided is not None
                try:
                    if job in early:
                        await early.pop(job)
                    # Re-decisions happen before anything is written: a model error here leaves no trace.
                    await recheck(outcome.decided, library=library, retriever=retriever, agents=agents, config=config)
                    absorbed = apply(outcome.trajectory, outcome.decided, library=library, run_id=run_id)
                except ModelError as exc:
                    outcome.error = str(exc)
                if absorbed is not None:
                    # Each problem's writes reach the file itself, not only the log: a -wal removed or lost loses
                    # at most the problem under way.
                    library.checkpoint()
                    revision = library.revision()
                    for i in outcome.decided.decisions:
                        if outcome.decided.decisions[i].action != Action.DISCARD:
                            exp = outcome.decided.candidates.experiences[i]
                            touched[(str(exp.zone), str(exp.level))] = revision
                    start_early_rechecks()
            if outcome.error is not None or absorbed is None:
                consecutive_failures += 1
                summary.failed += 1
                last_error = outcome.error or last_error
                library.record_problem(run_id, problem.id, status="failed", trajectory={"error": outcome.error})
                if consecutive_failures >= config.max_consecutive_failures:
                    raise ModelError(
                        f"{consecutive_failures} problems in a row failed at the model; last error: {outcome.error}. "
                        "Fix the model endpoint and run again with --resume."
                    )
            else:
                consecutive_failures = 0
                for action, n in absorbed.actions.items():
                    summary.actions[action] += n
                if absorbed.solved:
                    summary.solved += 1
                else:
                    summary.unsolved += 1
            report()
    finally:
        for task in [job for _, job in window] + list(early.values()):
            task.cancel()
        await asyncio.gather(*(job for _, job in window), *early.values(), return_exceptions=True)
    if todo and summary.failed == len(todo):
        # However few problems there were: a run in which none was learned from failed (the guard above needs a
        # streak of `max_consecutive_failures`, which a short run never reaches).
        raise ModelError(
            f"all {len(todo)} problems failed at the model; last error: {last_error}. "
            "Fix the model endpoint and run again with --resume."
        )
    if summary.failed == 0:
        library.finish_run(run_id, status="done")
    summary.seconds = time.monotonic() - started
    return summary
