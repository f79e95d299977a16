"""The training run: explore every problem, distil its trajectory, and let the updater fold the candidates into
the library.

Exploration and distillation run concurrently (up to `concurrency` problems at once). Library writes go through
one writer that takes finished problems in input order, so a run is deterministic for a deterministic model. Each
problem's writes and its "done" mark are one transaction: a run killed at any moment resumes (`resume=True`)
with every accepted experience kept and no problem half-applied.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flexlearn.agents.distiller import Candidates, distill
from flexlearn.agents.updater import Decision, decide
from flexlearn.errors import FlexError, ModelError
from flexlearn.experience import Action, Level, Provenance
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.explore import ExploreConfig, explore
from flexlearn.models.base import GenerationOptions, Usage
from flexlearn.tasks.base import Problem, Task
from flexlearn.trajectory import Trajectory

DONE = ("solved", "unsolved")


@dataclass
class LearnConfig:
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    concurrency: int = 4
    neighbours: int = 5
    distiller: GenerationOptions = field(default_factory=GenerationOptions)
    updater: GenerationOptions = field(default_factory=GenerationOptions)
    # Stop the run when this many problems in a row fail at the model (an unreachable server, a bad key).
    max_consecutive_failures: int = 5


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
    candidates: Candidates | None
    error: str | None = None


def new_run_id() -> str:
    return f"learn-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _resolve_run(library: Library, task: Task, problems: Sequence[Problem], source: str, resume: bool) -> str:
    ids = [p.id for p in problems]
    if not resume:
        run_id = new_run_id()
        library.begin_run(run_id, kind="learn", config={"task": task.name, "source": source, "problem_ids": ids})
        return run_id
    run_id = library.latest_run("learn")
    if run_id is None:
        raise FlexError(f"nothing to resume: {library.path} has no learn run yet (drop --resume)")
    config = library.run_config(run_id) or {}
    if config.get("task") != task.name or config.get("problem_ids") != ids:
        raise FlexError(
            f"cannot resume run {run_id}: it was started with task {config.get('task')!r} on "
            f"{config.get('source')!r}; run with the same task and training file, or drop --resume"
        )
    library.begin_run(run_id, kind="learn", config=config)
    return run_id


async def learn(
    problems: Sequence[Problem],
    *,
    task: Task,
    agents: Agents,
    library: Library,
    config: LearnConfig | None = None,
    source: str = "",
    resume: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> LearnSummary:
    config = config or LearnConfig()
    started = time.monotonic()
    run_id = _resolve_run(library, task, problems, source, resume)
    status = library.problem_status(run_id)
    todo = [p for p in problems if status.get(p.id) not in DONE]
    summary = LearnSummary(run_id, resume, total=len(problems), skipped=len(problems) - len(todo))
    summary.solved = sum(1 for s in status.values() if s == "solved")
    summary.unsolved = sum(1 for s in status.values() if s == "unsolved")
    model_name = agents.actor.name

    async def work(problem: Problem) -> _Outcome:
        try:
            trajectory = await explore(
                problem,
                task=task,
                actor=agents.actor,
                critic=agents.critic,
                config=config.explore,
                meter=agents.meter,
                pool=problems,
            )
            provenance = Provenance(task=task.name, problem_ids=[problem.id], model=model_name, run_id=run_id)
            candidates = await distill(
                agents.distiller,
                question=task.render(problem),
                answer=problem.answer,
                category=task.name,
                steps=trajectory.steps,
                provenance=provenance,
                options=config.distiller,
                meter=agents.meter,
            )
            return _Outcome(trajectory, candidates)
        except ModelError as exc:
            return _Outcome(None, None, error=str(exc))

    def report() -> None:
        if on_progress:
            # Problems done in an earlier invocation are already in solved/unsolved.
            done = summary.solved + summary.unsolved + summary.failed
            on_progress(Progress(done, summary.total, summary.solved, summary.failed, summary.actions["add"]))

    report()
    semaphore = asyncio.Semaphore(max(1, config.concurrency))

    async def bounded(problem: Problem) -> _Outcome:
        async with semaphore:
            return await work(problem)

    # A window of look-ahead keeps exploration busy while the writer works, without buffering the whole set.
    window: deque[tuple[Problem, asyncio.Task[_Outcome]]] = deque()
    pending = iter(todo)
    consecutive_failures = 0
    try:
        while True:
            while len(window) < 2 * max(1, config.concurrency):
                problem = next(pending, None)
                if problem is None:
                    break
                window.append((problem, asyncio.create_task(bounded(problem))))
            if not window:
                break
            problem, job = window.popleft()
            outcome = await job
            if outcome.error is not None:
                consecutive_failures += 1
                summary.failed += 1
                library.record_problem(run_id, problem.id, status="failed", trajectory={"error": outcome.error})
                if consecutive_failures >= config.max_consecutive_failures:
                    raise ModelError(
                        f"{consecutive_failures} problems in a row failed at the model; last error: {outcome.error}. "
                        "Fix the model endpoint and run again with --resume."
                    )
            else:
                consecutive_failures = 0
                await _absorb(
                    problem, outcome, library=library, agents=agents, config=config, run_id=run_id, summary=summary
                )
            report()
    finally:
        for _, job in window:
            job.cancel()
        await asyncio.gather(*(job for _, job in window), return_exceptions=True)
    if summary.failed == 0:
        library.finish_run(run_id, status="done")
    summary.seconds = time.monotonic() - started
    return summary


def _parent_id(library: Library, level: Level, target: str | None) -> str | None:
    """A merged or discarded parent resolves to the updater's target, which may sit at any level: link only to a
    more general entry."""
    if target is None:
        return None
    levels = list(Level)
    return target if levels.index(library.get(target).level) < levels.index(level) else None


async def _absorb(
    problem: Problem,
    outcome: _Outcome,
    *,
    library: Library,
    agents: Agents,
    config: LearnConfig,
    run_id: str,
    summary: LearnSummary,
) -> None:
    """Decide every candidate against the library as it stood before this problem, then apply all decisions and
    the problem's done mark in one transaction."""
    assert outcome.trajectory is not None and outcome.candidates is not None
    candidates = outcome.candidates
    order = sorted(range(len(candidates.experiences)), key=lambda i: list(Level).index(candidates.experiences[i].level))
    decisions: dict[int, Decision] = {}
    for i in order:
        candidate = candidates.experiences[i]
        neighbours = library.nearest(candidate, k=config.neighbours)
        decisions[i] = await decide(agents.updater, candidate, neighbours, options=config.updater, meter=agents.meter)

    trajectory = outcome.trajectory.to_dict()
    trajectory["distill_error"] = candidates.error
    trajectory["decisions"] = [
        {"candidate": i, "action": str(d.action), "target": d.target, "reason": d.reason} for i, d in decisions.items()
    ]
    usage = candidates.usage
    for d in decisions.values():
        usage = usage + (d.usage or Usage())
    trajectory["learn_usage"] = vars(usage)
    resolved: dict[int, str] = {}
    with library.transaction():
        for i in order:
            candidate, decision = candidates.experiences[i], decisions[i]
            parent = candidates.parents.get(i)
            if decision.action == Action.ADD:
                candidate.parent_id = _parent_id(
                    library, candidate.level, resolved.get(parent) if parent is not None else None
                )
                stored = library.add(candidate, reason=decision.reason, run_id=run_id, problem_id=problem.id)
                resolved[i] = stored.id
            elif decision.action == Action.MERGE:
                assert decision.target is not None
                library.merge(
                    decision.target,
                    content=decision.merged_content,
                    examples=None,
                    candidate=candidate,
                    reason=decision.reason,
                    run_id=run_id,
                    problem_id=problem.id,
                )
                resolved[i] = decision.target
            else:
                library.discard(candidate, reason=decision.reason, run_id=run_id, problem_id=problem.id)
                if decision.target:
                    resolved[i] = decision.target
            summary.actions[str(decision.action)] += 1
        solved = outcome.trajectory.solved
        library.record_problem(run_id, problem.id, status="solved" if solved else "unsolved", trajectory=trajectory)
    if solved:
        summary.solved += 1
    else:
        summary.unsolved += 1
