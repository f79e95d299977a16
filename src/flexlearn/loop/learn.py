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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from flexlearn.agents.distiller import Candidates, distill
from flexlearn.agents.tools import make_toolset
from flexlearn.agents.updater import Decision, decide
from flexlearn.errors import ModelError
from flexlearn.experience import LEVEL_RANK, Action, Experience, Level, Provenance, Status
from flexlearn.library.batch import Change
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.agents import Agents
from flexlearn.loop.explore import ExploreConfig, explore
from flexlearn.models.base import GenerationOptions, PromptKind, Usage
from flexlearn.retrieval import DEFAULT_RETRIEVER, get_retriever, select_guidance
from flexlearn.retrieval.base import Retriever
from flexlearn.retrieval.guidance import KIND_SEARCH_WIDTH, case_gate, kind_hits
from flexlearn.tasks.base import Problem, Task, reference_text
from flexlearn.trajectory import Trajectory

DONE = ("solved", "unsolved")
# Problems worked on per call slot, by default. The problems that start last and need the longest chains of calls
# set when a run ends: the more problems under way, the sooner those chains start. benchmarks/throughput.py at 32
# (128 problems): 0.89-0.90 of the bound with 2 a slot, 0.95 with 4 or 8; at 8 the same with 2, 4 or 8, where
# more problems under way only meant up to 3% more updater re-checks.
PROBLEMS_PER_SLOT = 4
# An entry's zone, level and text: two entries never share one.


@dataclass
class LearnConfig:
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    concurrency: int = 4
    # Problems worked on at once (0: PROBLEMS_PER_SLOT x `concurrency`). More problems than model calls in flight
    # keeps every call slot busy: a problem waits on its own chain of calls, and one waiting for its turn at the
    # writer or on a long chain would otherwise leave a slot idle. The model itself still sees at most
    # `concurrency` calls at once.
    problems_in_flight: int = 0
    neighbours: int = 5
    # How the updater finds a candidate's neighbours, by name (`flexlearn.retrieval.retriever_names()`).
    retriever: str = DEFAULT_RETRIEVER
    distiller: GenerationOptions = field(default_factory=GenerationOptions)
    updater: GenerationOptions = field(default_factory=GenerationOptions)
    # Stop the run when this many problems in a row fail at the model (an unreachable server, a bad key).
    max_consecutive_failures: int = 5
    # Explore under the library as it grows (the paper's pi(.|E)): each problem's actor sees what earlier problems
    # taught, and the verdicts count as helped/hurt for the entries it was shown.
    explore_with_library: bool = False
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens
    # Hold a chat-model distiller to fixed slots (a principle and a pattern per zone; `agents.distiller.SLOTS`).
    # Off by default: with Qwen2.5-Coder 1.5B the library learned that way made flex 14 points worse than vanilla
    # on GSM8k (README, "Does learning help?").
    distiller_slots: bool = False


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
class Decided:
    """A problem's candidates with the updater's decision for each, made against the library at `revision`."""

    candidates: Candidates
    decisions: dict[int, Decision]
    revision: int
    # Per candidate, the neighbours its decision was made against, as (id, content) in rank order.
    seen: dict[int, list[tuple[str, str]]]

    @property
    def order(self) -> list[int]:
        """Candidates from the most general down, so a parent is stored before its children link to it."""
        experiences = self.candidates.experiences
        return sorted(range(len(experiences)), key=lambda i: LEVEL_RANK[experiences[i].level])


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
    ids = [p.id for p in problems]
    if not resume:
        run_id = new_run_id()
        config = {"task": task.name, "source": source, "problem_ids": ids, "models": models}
        library.begin_run(run_id, kind="learn", config=config)
        return run_id
    run_id = library.resumable_run(
        "learn", task=task.name, problem_ids=ids, run_id=resume if isinstance(resume, str) else None
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
            if decided is not None and _needs_early_recheck(decided, touched):
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
            trajectory = await explore(
                problem,
                task=task,
                actor=agents.actor,
                critic=agents.critic,
                config=config.explore,
                guidance=guidance,
                meter=agents.meter,
                pool=problems,
                tools=tools,
            )
            candidates = await distil_trajectory(
                trajectory,
                question=task.render(problem),
                answer=reference_text(task, problem),
                category=task.name,
                known_category=problem.category,
                agents=agents,
                run_id=run_id,
                config=config,
            )
            decided = await decide_candidates(
                candidates, library=library, retriever=retriever, agents=agents, config=config
            )
            if _needs_early_recheck(decided, touched):  # written to while the updater was deciding
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
    known_category: str = "",
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
        known_category=known_category,
        slots=config.distiller_slots,
        # A base model's critique is noise in the shape of its example; a case quotes only a chat model's.
        trust_feedback=agents.critic.prompt_kind == PromptKind.CHAT,
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
    quarantine: bool = False,
    inside: Callable[[Absorbed], None] | None = None,
) -> Absorbed:
    """Distil one trajectory and absorb its candidates into the library in one transaction: what `learn` does
    with each explored problem, for a trajectory from anywhere (a user's own agent, through `flexlearn.record`).
    The run `run_id` must have begun (`Library.begin_run`). `quarantine=True` (lessons from a source to be
    reviewed) adds every lesson in quarantine and merges none into an entry the library serves. `inside` is
    called with the result inside that transaction, before it commits (see `absorb`)."""
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
    if quarantine:
        config = replace(config, neighbours=0)  # no neighbours: each lesson is added (or dropped as a copy)
        for candidate in candidates.experiences:
            candidate.status = Status.QUARANTINED
    return await absorb(
        trajectory, candidates, library=library, agents=agents, config=config, run_id=run_id, inside=inside
    )


async def absorb(
    trajectory: Trajectory,
    candidates: Candidates,
    *,
    library: Library,
    agents: Agents,
    config: LearnConfig,
    run_id: str,
    inside: Callable[[Absorbed], None] | None = None,
) -> Absorbed:
    """Decide every candidate against the library as it stands, then apply all decisions and the problem's done
    mark in one transaction. `inside`, when given, is called with the result within that same transaction, before
    it commits: what it writes commits with the changes or not at all (the outcome queue marks an outcome absorbed
    there), and if it raises, nothing is applied."""
    retriever = get_retriever(config.retriever, library)
    decided = await decide_candidates(candidates, library=library, retriever=retriever, agents=agents, config=config)
    with library.transaction():  # apply's own transaction joins this one
        absorbed = apply(trajectory, decided, library=library, run_id=run_id)
        if inside is not None:
            inside(absorbed)
    return absorbed


def _neighbours(retriever: Retriever, config: LearnConfig, candidate: Experience, kind: str = "") -> list[Experience]:
    """The entries the candidate may be merged into: its nearest of the same zone and level and, when the data
    named the problem's kind, of that kind alone. Lessons of two kinds the data tells apart are not merged, and a
    candidate of a kind the library has not seen yet is added without an updater call (an empty neighbourhood):
    on a dataset of many kinds that is most of them."""
    if not kind:
        hits = retriever.neighbours(candidate, k=config.neighbours, zone=candidate.zone, level=candidate.level)
        return [hit.experience for hit in hits]
    wide = config.neighbours * KIND_SEARCH_WIDTH
    hits = retriever.neighbours(candidate, k=wide, zone=candidate.zone, level=candidate.level)
    hits += [
        h
        for h in retriever.search(kind, k=wide, zone=candidate.zone, level=candidate.level)
        if h.experience.id != candidate.id
    ]
    return [hit.experience for hit in kind_hits(hits, kind, config.neighbours)]


async def decide_candidates(
    candidates: Candidates, *, library: Library, retriever: Retriever, agents: Agents, config: LearnConfig
) -> Decided:
    """The updater's decision for every candidate of one problem, made concurrently. All neighbours are read
    before the first model call, so every decision saw the library at one revision, the one recorded."""
    revision = library.revision()
    experiences = candidates.experiences
    neighbours = [_neighbours(retriever, config, candidate, candidates.kind) for candidate in experiences]
    replies = await asyncio.gather(
        *(
            decide(agents.updater, candidate, near, options=config.updater, meter=agents.meter)
            for candidate, near in zip(experiences, neighbours, strict=True)
        )
    )
    seen = {i: _identity(near) for i, near in enumerate(neighbours)}
    return Decided(candidates, dict(enumerate(replies)), revision, seen)


def _needs_early_recheck(decided: Decided, touched: dict[tuple[str, str], int]) -> bool:
    """Whether a write since the decision touched the zone and level of a candidate whose re-decision would cost
    a model call (a case's never does: the updater adds it unless it is a copy)."""
    return any(
        touched.get((str(exp.zone), str(exp.level)), -1) > decided.revision
        for exp in decided.candidates.experiences
        if exp.level != Level.CASE
    )


def _identity(neighbours: list[Experience]) -> list[tuple[str, str]]:
    return [(n.id, n.content) for n in neighbours]


async def recheck(
    decided: Decided, *, library: Library, retriever: Retriever, agents: Agents, config: LearnConfig
) -> None:
    """Bring decisions made against an older library up to date, in place, as the writer does before applying
    them: a candidate whose neighbours are no longer the ones its decision saw (an entry added, merged, edited or
    removed among them) is decided again against the neighbours it has now, which is what a serial writer would
    have asked. The updater decides exact duplicates and cases without a model call, so most of these are free;
    the rest are the price of keeping the run's result independent of timing (and of a kill and `--resume`)."""
    revision = library.revision()
    if revision == decided.revision:
        return
    experiences = decided.candidates.experiences
    stale: dict[int, list[Experience]] = {}
    for i in decided.decisions:
        near = _neighbours(retriever, config, experiences[i], decided.candidates.kind)
        if _identity(near) != decided.seen[i]:
            stale[i] = near
    replies = await asyncio.gather(
        *(
            decide(agents.updater, experiences[i], near, options=config.updater, meter=agents.meter)
            for i, near in stale.items()
        )
    )
    for i, reply in zip(stale, replies, strict=True):
        # Both calls were paid for: the record's usage counts the first one too.
        reply.usage = (decided.decisions[i].usage or Usage()) + (reply.usage or Usage())
        decided.decisions[i] = reply
        decided.seen[i] = _identity(stale[i])
    # Every decision now answers for the library at `revision`: a later re-check at the same revision is free.
    decided.revision = revision


def apply(trajectory: Trajectory, decided: Decided, *, library: Library, run_id: str) -> Absorbed:
    """Apply one problem's decisions (through `Library.apply`, which keeps the library's invariants and logs any
    decision it had to change), its helped/hurt counts and its done mark in one transaction."""
    problem_id = trajectory.problem_id
    candidates, decisions = decided.candidates, decided.decisions
    absorbed = Absorbed(run_id, problem_id, solved=trajectory.solved)
    order = decided.order
    record = trajectory.to_dict()
    record["distill_error"] = candidates.error
    record["distill_dropped"] = candidates.dropped
    usage = candidates.usage
    for d in decisions.values():
        usage = usage + (d.usage or Usage())
    record["learn_usage"] = vars(usage)
    changes = [
        Change(
            candidate,
            decisions[i].action,
            decisions[i].reason,
            target=decisions[i].target,
            merged_content=decisions[i].merged_content,
            parent=candidates.parents.get(i),
        )
        for i, candidate in enumerate(candidates.experiences)
    ]
    with library.transaction():
        applied = library.apply(changes, order=order, run_id=run_id, problem_id=problem_id)
        for i in order:
            done = applied[i]
            decisions[i] = replace(decisions[i], action=done.action, reason=done.reason, target=done.target)
            if done.action != Action.DISCARD and done.entry_id is not None:
                absorbed.experience_ids.append(done.entry_id)
            absorbed.actions[str(done.action)] += 1
        record["decisions"] = [
            {
                "candidate": i,
                "action": str(decisions[i].action),
                "target": decisions[i].target,
                "reason": decisions[i].reason,
            }
            for i in order
        ]
        # The entries the actor was shown, counted with the problem's done mark: a resumed run never counts twice.
        for helped in trajectory.outcomes():
            library.record_retrieval(trajectory.guidance)
            library.record_outcome(trajectory.guidance, helped=helped)
        status = "solved" if absorbed.solved else "unsolved"
        library.record_problem(run_id, problem_id, status=status, trajectory=record)
    return absorbed
