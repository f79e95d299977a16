"""Absorbing one explored problem: distil its trajectory into candidate lessons, let the updater decide each against
its nearest entries (add, merge or discard), re-check decisions the library has since overtaken, and apply them
with the problem's counters and done mark in one transaction (`Library.apply` keeps the library's invariants).

`learn` runs these for every training problem through one writer; `learn_from_trajectory` runs them for one
outcome (`flexlearn.record`, the outcome queue's absorber).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from flexlearn.agents.distiller import Candidates, distill
from flexlearn.agents.updater import Decision, decide
from flexlearn.experience import LEVEL_RANK, Action, Experience, Level, Provenance, Status
from flexlearn.library.batch import Change
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.config import LearnConfig
from flexlearn.models.base import PromptKind, Usage
from flexlearn.retrieval import get_retriever
from flexlearn.retrieval.base import Retriever
from flexlearn.retrieval.guidance import KIND_SEARCH_WIDTH, kind_hits
from flexlearn.trajectory import Trajectory


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


def needs_early_recheck(decided: Decided, touched: dict[tuple[str, str], int]) -> bool:
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
