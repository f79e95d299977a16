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
from flexlearn.experience import LEVEL_RANK, Action, Level, Provenance
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.explore import ExploreConfig, explore
from flexlearn.models.base import GenerationOptions, Usage
from flexlearn.retrieval import get_retriever
from flexlearn.tasks.base import Problem, Task
from flexlearn.trajectory import Trajectory

DONE = ("solved", "unsolved")


@dataclass
class LearnConfig:
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    concurrency: int = 4
    neighbours: int = 5
    # How the updater finds a candidate's neighbours, by name (`flexlearn.retrieval.retriever_names()`).
    retriever: str = "bm25"
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


def _resolve_run(
    library: Library, task: Task, problems: Sequence[Problem], source: str, resume: bool, models: dict[str, str]
) -> str:
    ids = [p.id for p in problems]
    if not resume:
        run_id = new_run_id()
        config = {"task": task.name, "source": source, "problem_ids": ids, "models": models}
        library.begin_run(run_id, kind="learn", config=config)
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
    get_retriever(config.retriever, library)  # an unknown name fails here, not after the first exploration
    started = time.monotonic()
    run_id = _resolve_run(library, task, problems, source, resume, agents.models())
    status = library.problem_status(run_id)
    todo = [p for p in problems if status.get(p.id) not in DONE]
    summary = LearnSummary(run_id, resume, total=len(problems), skipped=len(problems) - len(todo))
    summary.solved = sum(1 for s in status.values() if s == "solved")
    summary.unsolved = sum(1 for s in status.values() if s == "unsolved")

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
            candidates = await distil_trajectory(
                trajectory,
                question=task.render(problem),
                answer=problem.answer,
                category=task.name,
                agents=agents,
                run_id=run_id,
                config=config,
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
            absorbed: Absorbed | None = None
            if outcome.error is None:
                assert outcome.trajectory is not None and outcome.candidates is not None
                try:
                    # The updater decides before anything is written: a model error here leaves no trace.
                    absorbed = await absorb(
                        outcome.trajectory,
                        outcome.candidates,
                        library=library,
                        agents=agents,
                        config=config,
                        run_id=run_id,
                    )
                except ModelError as exc:
                    outcome.error = str(exc)
            if outcome.error is not None or absorbed is None:
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
                for action, n in absorbed.actions.items():
                    summary.actions[action] += n
                if absorbed.solved:
                    summary.solved += 1
                else:
                    summary.unsolved += 1
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
    return target if LEVEL_RANK[library.get(target).level] < LEVEL_RANK[level] else None


@dataclass
class Absorbed:
    """What one trajectory added to the library: the updater's decisions and the entries they touched."""

    run_id: str
    problem_id: str
    solved: bool
    actions: dict[str, int] = field(default_factory=lambda: {"add": 0, "merge": 0, "discard": 0})
    # Entries added, and existing entries merged into, in the order the candidates were decided.
    experience_ids: list[str] = field(default_factory=list)


async def distil_trajectory(
    trajectory: Trajectory,
    *,
    question: str,
    answer: str,
    category: str,
    agents: Agents,
    run_id: str,
    config: LearnConfig,
    actor: str | None = None,
) -> Candidates:
    """The distiller's candidate experiences from one trajectory, their provenance naming the model that wrote
    them and the one whose attempts they came from (`actor`, by default the actor's model)."""
    provenance = Provenance(
        task=category,
        problem_ids=[trajectory.problem_id],
        model=agents.distiller.name,
        run_id=run_id,
        actor=agents.actor.name if actor is None else actor,
    )
    return await distill(
        agents.distiller,
        question=question,
        answer=answer,
        category=category,
        steps=trajectory.steps,
        provenance=provenance,
        options=config.distiller,
        meter=agents.meter,
    )


async def learn_from_trajectory(
    trajectory: Trajectory,
    *,
    question: str,
    answer: str,
    category: str,
    agents: Agents,
    library: Library,
    run_id: str,
    config: LearnConfig | None = None,
    actor: str | None = None,
) -> Absorbed:
    """Distil one trajectory and absorb its candidates into the library in one transaction: what `learn` does
    with each explored problem, for a trajectory from anywhere (a user's own agent, through `flexlearn.record`).
    The run `run_id` must have begun (`Library.begin_run`)."""
    config = config or LearnConfig()
    candidates = await distil_trajectory(
        trajectory,
        question=question,
        answer=answer,
        category=category,
        agents=agents,
        run_id=run_id,
        config=config,
        actor=actor,
    )
    return await absorb(trajectory, candidates, library=library, agents=agents, config=config, run_id=run_id)


async def absorb(
    trajectory: Trajectory,
    candidates: Candidates,
    *,
    library: Library,
    agents: Agents,
    config: LearnConfig,
    run_id: str,
) -> Absorbed:
    """Decide every candidate against the library as it stood before this problem, then apply all decisions and
    the problem's done mark in one transaction."""
    problem_id = trajectory.problem_id
    absorbed = Absorbed(run_id, problem_id, solved=trajectory.solved)
    order = sorted(range(len(candidates.experiences)), key=lambda i: LEVEL_RANK[candidates.experiences[i].level])
    retriever = get_retriever(config.retriever, library)
    decisions: dict[int, Decision] = {}
    for i in order:
        candidate = candidates.experiences[i]
        neighbours = [hit.experience for hit in retriever.neighbours(candidate, k=config.neighbours)]
        decisions[i] = await decide(agents.updater, candidate, neighbours, options=config.updater, meter=agents.meter)

    record = trajectory.to_dict()
    record["distill_error"] = candidates.error
    record["decisions"] = [
        {"candidate": i, "action": str(d.action), "target": d.target, "reason": d.reason} for i, d in decisions.items()
    ]
    usage = candidates.usage
    for d in decisions.values():
        usage = usage + (d.usage or Usage())
    record["learn_usage"] = vars(usage)
    resolved: dict[int, str] = {}
    with library.transaction():
        for i in order:
            candidate, decision = candidates.experiences[i], decisions[i]
            parent = candidates.parents.get(i)
            if decision.action == Action.ADD:
                candidate.parent_id = _parent_id(
                    library, candidate.level, resolved.get(parent) if parent is not None else None
                )
                stored = library.add(candidate, reason=decision.reason, run_id=run_id, problem_id=problem_id)
                resolved[i] = stored.id
                absorbed.experience_ids.append(stored.id)
            elif decision.action == Action.MERGE:
                assert decision.target is not None
                library.merge(
                    decision.target,
                    content=decision.merged_content,
                    examples=None,
                    candidate=candidate,
                    reason=decision.reason,
                    run_id=run_id,
                    problem_id=problem_id,
                )
                resolved[i] = decision.target
                absorbed.experience_ids.append(decision.target)
            else:
                library.discard(candidate, reason=decision.reason, run_id=run_id, problem_id=problem_id)
                if decision.target:
                    resolved[i] = decision.target
            absorbed.actions[str(decision.action)] += 1
        status = "solved" if absorbed.solved else "unsolved"
        library.record_problem(run_id, problem_id, status=status, trajectory=record)
    return absorbed
