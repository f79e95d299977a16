"""The engine: one FLEX setup, built once from a task, the agents, a library and the settings, and every
operation on it: learn, evaluate, solve, guidance, record, and the operations built from them (the regression
gate, absorbing a queue, the scaling and inheritance experiments).

    engine = Engine.of("gsm8k", agents, library, learning=LearnSettings(rollouts=1))
    summary = await engine.learn("train.jsonl")
    results = await engine.evaluate("test.jsonl", train="train.jsonl")

`flexlearn`'s functions (`learn`, `evaluate`, `solve`, `guidance`, `record`), the CLI, the demo, the MCP server and
the benchmarks are thin callers of it, so a FLEX step means one thing everywhere: the settings
(`flexlearn.settings`) are the single source of every default, and each operation below goes to the one loop
that does it (`loop/learn.py`; `loop/evaluate.py`, whose episode, `loop/episode.py`, is also `solve`'s and
exploration's). This module and the result types it names are public (docs/api.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flexlearn.agents.actor import render_guidance
from flexlearn.agents.critic import render_checklist
from flexlearn.errors import ConfigError
from flexlearn.library.outcomes import MAX_ATTEMPTS, Outcome
from flexlearn.library.store import Library
from flexlearn.loop.absorb import Absorbed
from flexlearn.loop.absorber import BATCH_SIZE, AbsorbSummary, Queued, aabsorb, learn_outcome
from flexlearn.loop.agents import Agents
from flexlearn.loop.compare import against_others, by_category
from flexlearn.loop.episode import check_guide_at, place, resolve_guide_at, resolve_rounds
from flexlearn.loop.evaluate import Mode, check_modes
from flexlearn.loop.evaluate import evaluate as _evaluate
from flexlearn.loop.experiments import available_sizes, parse_sizes
from flexlearn.loop.experiments import inherit as _inherit
from flexlearn.loop.experiments import scaling as _scaling
from flexlearn.loop.gate import GATE_STOPPED, SMALL_CHECK_SET, Verdict
from flexlearn.loop.gate import gate as _gate
from flexlearn.loop.gate import reopen as _reopen
from flexlearn.loop.learn import LearnSummary, Progress
from flexlearn.loop.learn import learn as _learn
from flexlearn.loop.solve import Solution
from flexlearn.loop.solve import solve as _solve
from flexlearn.loop.stats import paired
from flexlearn.models.base import ChatModel, PromptKind
from flexlearn.records import Fit, InheritRow, ItemRecord, ModeResult, ScalingPoint
from flexlearn.retrieval import get_retriever, select_guidance
from flexlearn.retrieval.guidance import case_gate
from flexlearn.settings import EVAL, LEARN, SOLVE, EvalSettings, LearnSettings, SolveSettings
from flexlearn.tasks import Problem, Task, get_task

__all__ = [
    "BATCH_SIZE",
    "GATE_STOPPED",
    "MAX_ATTEMPTS",
    "SMALL_CHECK_SET",
    "AbsorbSummary",
    "Absorbed",
    "Engine",
    "Fit",
    "Guidance",
    "InheritRow",
    "LearnSummary",
    "Mode",
    "Problems",
    "Progress",
    "Queued",
    "ScalingPoint",
    "Solution",
    "Verdict",
    "against_others",
    "available_sizes",
    "by_category",
    "check_evaluation",
    "paired",
    "parse_sizes",
]

Problems = str | os.PathLike[str] | Sequence[Problem]
"""A JSONL file the task reads, or problems already loaded."""


class Guidance(str):
    """The text `guidance` returns for the agent's prompt, remembering which entries it shows (`ids`): hand it back
    to `record` with the outcome and those entries' helped/hurt counters move. At review, `lessons` is the
    checklist for the agent's own reviewer ("" otherwise)."""

    ids: tuple[str, ...]
    lessons: str

    def __new__(cls, text: str, ids: Sequence[str] = (), lessons: str = "") -> Guidance:
        made = super().__new__(cls, text)
        made.ids = tuple(ids)
        made.lessons = lessons
        return made


def guidance_for(
    library: Library,
    question: str,
    *,
    budget_tokens: int,
    retriever: str,
    category: str = "",
    guide_at: str = "prompt",
) -> Guidance:
    """The experience block for `question` as flex mode shows it to a chat actor (see `flexlearn.guidance`); the
    entries' retrieval counters go up unless the library is read-only."""
    review = check_guide_at(guide_at) == "review"
    entries = select_guidance(
        get_retriever(retriever, library),
        library,
        question,
        budget_tokens=budget_tokens,
        case_min_shared=case_gate(PromptKind.CHAT),
        category=category,
    )
    if entries and not library.read_only:
        library.record_retrieval([e.id for e in entries])
    placement = place(entries, review=review, category=category)
    lessons = render_checklist(placement.lessons) if review else ""
    return Guidance(render_guidance(placement.shown), [e.id for e in entries], lessons)


def check_evaluation(settings: EvalSettings, modes: Sequence[Mode], *, library: Library | None, train: bool) -> None:
    """ConfigError when a mode lacks what it needs (flex a library, icl training examples) or the retriever is
    unknown; cheap, so a command calls it before it loads or calls a model."""
    check_modes(modes, library=library, train=train)
    if library is not None and Mode.FLEX in modes:
        get_retriever(settings.retriever, library)


@dataclass
class Engine:
    """A task, the agents that work on it, the library they learn into (None: none, for vanilla, icl and agent
    evaluation, or `solve` without experience) and the settings of each operation (`learning` for `learn`,
    `evaluation` for `evaluate` and the gate, `solving` for `solve` and `guidance`). Built once; every operation
    reads it. `Engine.of` takes names (a task's name, one model for every role)."""

    task: Task | None
    agents: Agents
    library: Library | None = None
    learning: LearnSettings = field(default=LEARN)
    evaluation: EvalSettings = field(default=EVAL)
    solving: SolveSettings = field(default=SOLVE)

    @classmethod
    def of(
        cls,
        task: str | Task | None,
        agents: Agents | ChatModel,
        library: Library | None = None,
        *,
        learning: LearnSettings | None = None,
        evaluation: EvalSettings | None = None,
        solving: SolveSettings | None = None,
    ) -> Engine:
        """The engine of `task` (a `Task`, a built-in task's name, or None for an engine that only records
        outcomes and gives guidance) and `agents` (an `Agents`, or one model for every role), with the settings
        given and the defaults for the rest."""
        return cls(
            task=get_task(task) if isinstance(task, str) else task,
            agents=agents if isinstance(agents, Agents) else Agents(actor=agents),
            library=library,
            learning=learning or LEARN,
            evaluation=evaluation or EVAL,
            solving=solving or SOLVE,
        )

    # -- the settings, resolved for these agents ----------------------------------------------------------

    @property
    def guide_at(self) -> str:
        """Where flex mode and `solve` put the retrieved lessons for this actor: "prompt" or "review"."""
        return resolve_guide_at(self.evaluation.guide_at, self.agents.actor)

    @property
    def agent_rounds(self) -> int:
        """The attempts of agent mode's loop (and flex's at review), resolved for the actor when not set."""
        return resolve_rounds(self.evaluation.agent_rounds, self.agents.actor)

    def modes(self, *, train: bool) -> list[Mode]:
        """The evaluation modes to run: those the settings name, or every mode the inputs allow."""
        return self.evaluation.mode_list(library=self.library is not None, train=train)

    def check(self, modes: Sequence[Mode], *, train: bool) -> None:
        """`check_evaluation` of these settings and library."""
        check_evaluation(self.evaluation, modes, library=self.library, train=train)

    def problems(self, problems: Problems) -> list[Problem]:
        """`problems` loaded by the task when they name a file."""
        if isinstance(problems, str | os.PathLike):
            return self._task("loading problems").load(os.fspath(problems))
        return list(problems)

    def _task(self, operation: str) -> Task:
        if self.task is None:
            raise ConfigError(f"{operation} needs a task")
        return self.task

    def _library(self, operation: str) -> Library:
        if self.library is None:
            raise ConfigError(f"{operation} needs an experience library")
        return self.library

    # -- the operations -----------------------------------------------------------------------------------

    async def learn(
        self,
        problems: Problems,
        *,
        resume: bool | str = False,
        source: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> LearnSummary:
        """Explore every problem, distil each trajectory and fold the lessons into the library (see
        `flexlearn.learn`)."""
        if source is None:
            source = os.fspath(problems) if isinstance(problems, str | os.PathLike) else "python"
        return await _learn(
            self.problems(problems),
            task=self._task("learn"),
            agents=self.agents,
            library=self._library("learn"),
            config=self.learning.config(self.agents.actor),
            source=source,
            resume=resume,
            on_progress=on_progress,
        )

    async def evaluate(
        self,
        problems: Problems,
        *,
        train: Problems = (),
        modes: Sequence[Mode] | None = None,
        on_item: Callable[[ItemRecord], None] | None = None,
        done: Mapping[tuple[str, str, int], ItemRecord] | None = None,
    ) -> list[ModeResult]:
        """One `ModeResult` per mode (`modes`, default `self.modes`), each problem answered in it (see
        `flexlearn.evaluate`)."""
        train_problems = self.problems(train)
        return await _evaluate(
            self.problems(problems),
            task=self._task("evaluate"),
            modes=list(modes) if modes is not None else self.modes(train=bool(train_problems)),
            agents=self.agents,
            config=self.evaluation.config(),
            library=self.library,
            train=train_problems,
            on_item=on_item,
            done=done,
        )

    async def solve(self, question: str, *, answer: str | None = None, category: str = "") -> Solution:
        """Answer one question as flex mode answers an evaluation item (see `flexlearn.solve`)."""
        settings = self.solving
        return await _solve(
            question,
            task=self._task("solve"),
            agents=self.agents,
            library=self.library,
            budget_tokens=settings.budget_tokens,
            options=settings.actor,
            retriever=settings.retriever,
            tools=settings.tools,
            answer=answer,
            category=category,
            guide_at=resolve_guide_at(settings.guide_at, self.agents.actor),
            review_rounds=resolve_rounds(settings.review_rounds, self.agents.actor),
        )

    def guidance(self, question: str, *, category: str = "") -> Guidance:
        """The experience block for `question`, placed where this actor uses it (see `flexlearn.guidance`)."""
        return guidance_for(
            self._library("guidance"),
            question,
            budget_tokens=self.solving.budget_tokens,
            retriever=self.solving.retriever,
            category=category,
            guide_at=resolve_guide_at(self.solving.guide_at, self.agents.actor),
        )

    async def record(self, outcome: Outcome, *, wait: bool = True, review: bool = False) -> Absorbed | Queued:
        """Learn from one outcome of an agent (see `flexlearn.record`): distilled and absorbed now (`wait`), or
        queued in the library for `absorb`. `review=True` adds its lessons in quarantine."""
        library = self._library("record")
        if not wait:
            return Queued(library.enqueue_outcome(outcome))
        return await learn_outcome(outcome, agents=self.agents, library=library, review=review)

    def outcome(
        self,
        question: str,
        attempt: str,
        *,
        correct: bool,
        answer: str | None = None,
        feedback: str | None = None,
        problem_id: str | None = None,
        run_id: str | None = None,
        actor: str = "external",
        guidance: Guidance | Sequence[str] | None = None,
    ) -> Outcome:
        """An outcome of this engine's task, its answer extracted by the task, for `record`."""
        return Outcome.of(
            question,
            attempt,
            correct=correct,
            answer=answer,
            feedback=feedback,
            category=self.task.name if self.task else "",
            extracted=self.task.extract_answer(attempt) if self.task else None,
            problem_id=problem_id,
            run_id=run_id,
            actor=actor,
            guidance=guidance.ids if isinstance(guidance, Guidance) else list(guidance or []),
        )

    async def absorb(
        self,
        *,
        batch_size: int = BATCH_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        review: bool = False,
        limit: int | None = None,
        skip: Collection[str] = (),
        on_progress: Callable[[AbsorbSummary], None] | None = None,
    ) -> AbsorbSummary:
        """Absorb what the library's outcome queue holds, oldest first (see `flexlearn.loop.absorber.aabsorb`)."""
        return await aabsorb(
            self._library("absorb"),
            agents=self.agents,
            batch_size=batch_size,
            max_attempts=max_attempts,
            review=review,
            limit=limit,
            skip=skip,
            on_progress=on_progress,
        )

    async def gate(
        self,
        before: int,
        check: Problems,
        *,
        what: str = "batch",
        runs: set[str] | None = None,
        on_item: Callable[[ItemRecord], None] | None = None,
    ) -> Verdict:
        """The regression gate: the library's changes since version `before` (those of `runs`, when given) are
        kept only if flex mode on `check`, with the evaluation settings, is not worse with them than without;
        else that batch alone is undone (`flexlearn.library.history.revert`)."""
        return await _gate(
            self._library("the gate"),
            before,
            self.problems(check),
            task=self._task("the gate"),
            agents=self.agents,
            config=self.evaluation.config(),
            what=what,
            runs=runs,
            on_item=on_item,
        )

    def reopen_gate(self, run_id: str) -> tuple[int, str] | None:
        """Bring back the batch of learn run `run_id` that a stopped gate rolled back, to judge it again with
        `gate(before, check, runs={run_id, brought})`: returns (before, brought), or None when no stopped gate holds
        that run (see `flexlearn.loop.gate.reopen`)."""
        return _reopen(self._library("the gate"), run_id)

    async def scaling(
        self,
        problems: Problems,
        *,
        sizes: Sequence[int],
        workdir: Path,
        on_item: Callable[[ItemRecord], None] | None = None,
        on_point: Callable[[ScalingPoint], None] | None = None,
    ) -> tuple[list[ScalingPoint], Fit | None]:
        """Flex mode with the library replayed to each size of `sizes` (the paper's scaling law of experience);
        the replays are written to `workdir`."""
        return await _scaling(
            self.problems(problems),
            task=self._task("scaling"),
            agents=self.agents,
            library=self._library("scaling"),
            sizes=sizes,
            workdir=workdir,
            config=self.evaluation.config(),
            on_item=on_item,
            on_point=on_point,
        )

    async def inherit(
        self,
        problems: Problems,
        *,
        inherited: Library,
        on_item: Callable[[ItemRecord], None] | None = None,
    ) -> list[InheritRow]:
        """This engine's actor vanilla, with the `inherited` library (another model's), and with its own library
        when the engine has one."""
        return await _inherit(
            self.problems(problems),
            task=self._task("inherit"),
            agents=self.agents,
            inherited=inherited,
            own=self.library,
            config=self.evaluation.config(),
            on_item=on_item,
        )
