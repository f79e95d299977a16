"""Evaluation in the paper's four modes:

- vanilla: the plain model, the question alone;
- icl: k training problems with their reference answers as worked examples before the question;
- agent: actor + critic retries at test time without a library; the critic judges blind (no reference answer);
- flex: the actor with experience retrieved from the library in its context.

Every item is recorded (prompt, reply, extracted answer, score, retrieved experience ids, calls, tokens) so a
report can be rebuilt without calling the model again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from flexlearn.agents.actor import Feedback, Shot, act, actor_prompt, worked_shots
from flexlearn.agents.critic import judge
from flexlearn.errors import ConfigError, ModelError
from flexlearn.experience import Experience
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.agents import Agents
from flexlearn.loop.stats import bootstrap, wilson
from flexlearn.models.base import GenerationOptions, Usage
from flexlearn.records import ItemRecord, Metric, ModeResult
from flexlearn.retrieval import Retriever, get_retriever, select_guidance
from flexlearn.tasks.base import MetricTask, Problem, Task


class Mode(StrEnum):
    VANILLA = "vanilla"
    ICL = "icl"
    AGENT = "agent"
    FLEX = "flex"


@dataclass
class EvalConfig:
    icl_k: int = 3
    agent_rounds: int = 3
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens
    # How flex mode searches the library, by name (`flexlearn.retrieval.retriever_names()`).
    retriever: str = "bm25"
    concurrency: int = 4
    seed: int = 0
    # Samples per problem (pass@1 averaged over samples); use a temperature above 0 for them to differ.
    repeats: int = 1
    actor: GenerationOptions = field(default_factory=GenerationOptions)
    critic: GenerationOptions = field(default_factory=GenerationOptions)


def parse_modes(text: str) -> list[Mode]:
    modes = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            modes.append(Mode(part))
        except ValueError:
            raise ConfigError(f"unknown mode {part!r}; choose from {', '.join(m.value for m in Mode)}") from None
    if not modes:
        raise ConfigError("no evaluation mode given; e.g. --modes vanilla,icl,agent,flex")
    return modes


async def _one(
    mode: Mode,
    problem: Problem,
    repeat: int,
    *,
    task: Task,
    agents: Agents,
    config: EvalConfig,
    library: Library | None,
    train: Sequence[Problem],
    retriever: Retriever | None,
) -> ItemRecord:
    guidance: list[Experience] = []
    shots: list[Shot] = []
    if mode == Mode.FLEX:
        assert library is not None and retriever is not None
        guidance = select_guidance(retriever, library, task.render(problem), budget_tokens=config.budget_tokens)
    elif mode == Mode.ICL:
        shots = worked_shots(task, train, problem, config.icl_k, config.seed)

    usage, calls, rounds = Usage(), 0, 0
    feedback: list[Feedback] = []
    actor_options = config.actor
    if config.repeats > 1:
        # A distinct seed per sample, so that samples differ wherever the backend honours seeds.
        actor_options = replace(config.actor, seed=(config.actor.seed or 0) + repeat)
    prompt_text = reply = ""
    try:
        for rnd in range(config.agent_rounds if mode == Mode.AGENT else 1):
            prompt = actor_prompt(task, problem, guidance=guidance, shots=shots, feedback=feedback)
            attempt = await act(agents.actor, prompt, actor_options)
            usage, calls, rounds = usage + attempt.usage, calls + 1, rnd + 1
            prompt_text, reply = attempt.prompt_text, attempt.text
            if mode != Mode.AGENT or rnd == config.agent_rounds - 1:
                break
            verdict = await judge(
                agents.critic,
                question=task.render(problem),
                attempt=attempt.text,
                extracted=task.extract_answer(attempt.text),
                options=config.critic,
                meter=agents.meter,
            )
            usage, calls = usage + verdict.critique.usage, calls + 1
            if verdict.correct:
                break
            feedback.append(Feedback(attempt.text, verdict.critique.diagnosis, verdict.critique.next_step))
        error = None
    except ModelError as exc:
        error = str(exc)
    score = task.score(reply, problem)
    return ItemRecord(
        mode=str(mode),
        problem_id=problem.id,
        question=task.render(problem),
        reference=problem.answer,
        prompt=prompt_text,
        reply=reply,
        extracted=score.extracted,
        correct=score.correct and error is None,
        score=score.value if error is None else 0.0,
        retrieved=[e.id for e in guidance],
        calls=calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        rounds=rounds,
        error=error,
        repeat=repeat,
        score_data=score.data if error is None else {},
    )


async def evaluate(
    problems: Sequence[Problem],
    *,
    task: Task,
    modes: Sequence[Mode],
    agents: Agents,
    config: EvalConfig | None = None,
    library: Library | None = None,
    train: Sequence[Problem] = (),
    on_item: Callable[[ItemRecord], None] | None = None,
) -> list[ModeResult]:
    config = config or EvalConfig()
    if Mode.FLEX in modes and library is None:
        raise ConfigError("mode 'flex' needs an experience library: pass --library")
    if Mode.ICL in modes and not train:
        raise ConfigError("mode 'icl' needs training examples: pass --train with a JSONL file")
    # Resolved once, so an unknown name fails before any model call.
    retriever = get_retriever(config.retriever, library) if library is not None and Mode.FLEX in modes else None
    semaphore = asyncio.Semaphore(max(1, config.concurrency))
    repeats = max(1, config.repeats)
    results = []
    for mode in modes:
        started = time.monotonic()

        async def run(problem: Problem, repeat: int, mode: Mode = mode) -> ItemRecord:
            async with semaphore:
                record = await _one(
                    mode,
                    problem,
                    repeat,
                    task=task,
                    agents=agents,
                    config=config,
                    library=library,
                    train=train,
                    retriever=retriever,
                )
            if on_item:
                on_item(record)
            return record

        items = list(await asyncio.gather(*(run(p, r) for p in problems for r in range(repeats))))
        if library is not None and mode == Mode.FLEX:
            library.record_retrieval([i for item in items for i in item.retrieved])
        results.append(summarise(str(mode), task, problems, items, time.monotonic() - started, repeats, config.seed))
    return results


def summarise(
    mode: str,
    task: Task,
    problems: Sequence[Problem],
    items: list[ItemRecord],
    seconds: float,
    repeats: int,
    seed: int = 0,
) -> ModeResult:
    """Accuracy with a 95% interval (Wilson for one sample per problem, else a bootstrap over problems), and the
    task's own metric with a bootstrap interval when it has one."""
    by_problem: dict[str, list[ItemRecord]] = {p.id: [] for p in problems}
    for item in items:
        by_problem[item.problem_id].append(item)
    groups = list(by_problem.values())
    correct = sum(item.correct for item in items)
    if repeats == 1:
        low, high = wilson(correct, len(items))
    else:
        low, high = bootstrap(groups, lambda gs: _mean([i.correct for g in gs for i in g]), seed=seed)
    return ModeResult(
        mode=mode,
        n=len(problems),
        correct=correct,
        ci_low=low,
        ci_high=high,
        calls=sum(i.calls for i in items),
        prompt_tokens=sum(i.prompt_tokens for i in items),
        completion_tokens=sum(i.completion_tokens for i in items),
        seconds=seconds,
        errors=sum(i.error is not None for i in items),
        items=items,
        samples=len(items),
        repeats=repeats,
        metric=task_metric(task, problems, groups, seed),
    )


def task_metric(
    task: Task, problems: Sequence[Problem], groups: list[list[ItemRecord]], seed: int = 0
) -> Metric | None:
    if not isinstance(task, MetricTask):
        return None
    paired = [[(p, item.as_score()) for item in group] for p, group in zip(problems, groups, strict=True)]
    values = task.aggregate([pair for group in paired for pair in group])
    low, high = bootstrap(
        paired, lambda gs: task.aggregate([pair for g in gs for pair in g])[task.metric], resamples=500, seed=seed
    )
    return Metric(name=task.metric, value=values[task.metric], ci_low=low, ci_high=high, values=values)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


@dataclass
class Solution:
    reply: str
    answer: str | None
    guidance: list[Experience]
    usage: Usage


async def solve(
    question: str,
    *,
    task: Task,
    agents: Agents,
    library: Library | None,
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens,
    options: GenerationOptions | None = None,
    retriever: str = "bm25",
) -> Solution:
    """Answer one question with guidance retrieved from the library by the retriever named `retriever`."""
    problem = Problem(id="question", question=question, answer="")
    guidance: list[Experience] = []
    if library is not None:
        guidance = select_guidance(get_retriever(retriever, library), library, question, budget_tokens=budget_tokens)
    attempt = await act(agents.actor, actor_prompt(task, problem, guidance=guidance), options)
    if library is not None and guidance:
        library.record_retrieval([e.id for e in guidance])
    return Solution(attempt.text, task.extract_answer(attempt.text), guidance, attempt.usage)
