"""Evaluation in the paper's four modes:

- vanilla: the plain model, the question alone;
- icl: k training problems with their reference answers as worked examples before the question;
- agent: actor + critic retries at test time without a library; the critic judges blind (no reference answer);
- flex: the actor with experience retrieved from the library in its context; or, with `guide_at="review"`, the
  agent's loop in which the blind critic checks each attempt against the retrieved principles and patterns
  instead (the actor sees only the retrieved worked cases of problems like its own, and retries on the critic's
  feedback).

With tools (`EvalConfig.tools`), the actor of agent and flex modes writes Python that runs in the sandbox
(`agents/tool_actor.py`): agent with tools is the paper's Agent baseline (tools, no library, so never the
experience tool), flex with tools the paper's FLEX actor. Vanilla and icl stay tool-free baselines.

Every item is recorded (prompt, reply, extracted answer, score, retrieved experience ids, calls, tokens) so a
report can be rebuilt without calling the model again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

from flexlearn.agents.actor import Shot, worked_shots
from flexlearn.agents.tools import ToolSet, make_toolset, parse_tools
from flexlearn.errors import ConfigError, ModelError
from flexlearn.experience import Experience
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.agents import Agents
from flexlearn.loop.episode import Episode, check_guide_at, place, resolve_guide_at, resolve_rounds, run_episode
from flexlearn.loop.stats import bootstrap, wilson
from flexlearn.models.base import ChatModel, GenerationOptions, PromptKind
from flexlearn.models.memo import ReplyMemo, is_deterministic
from flexlearn.records import ItemRecord, Metric, ModeResult
from flexlearn.retrieval import DEFAULT_RETRIEVER, Retriever, get_retriever, select_guidance
from flexlearn.retrieval.guidance import case_gate
from flexlearn.sandbox import SandboxLimits
from flexlearn.tasks.base import MetricTask, Problem, Task

T = TypeVar("T")


class Mode(StrEnum):
    VANILLA = "vanilla"
    ICL = "icl"
    AGENT = "agent"
    FLEX = "flex"


@dataclass
class EvalConfig:
    icl_k: int = 3
    agent_rounds: int | None = None  # None: by the actor (`rounds_default`)
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens
    # How flex mode searches the library, by name (`flexlearn.retrieval.retriever_names()`).
    retriever: str = DEFAULT_RETRIEVER
    # Show only hits sharing this many content words with the question (0: every hit; see select_guidance).
    min_shared: int = 0
    # The same for case hits alone; None: by the actor's prompt kind (`flexlearn.retrieval.guidance.case_gate`).
    case_min_shared: int | None = None
    # Where flex mode uses what it retrieves: "prompt" (the actor's context, the paper's way) or "review" (the
    # agent's critic checks each attempt against the principles and patterns, the actor sees the golden cases;
    # up to `agent_rounds` attempts). None: by the actor (`guide_at_default`).
    guide_at: str | None = None
    concurrency: int = 4
    seed: int = 0
    # Samples per problem (pass@1 averaged over samples); use a temperature above 0 for them to differ.
    repeats: int = 1
    # Tools of the agent and flex actors: "python", "experience" (flex only). Empty: one-shot replies.
    tools: tuple[str, ...] = ()
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    actor: GenerationOptions = field(default_factory=GenerationOptions)
    critic: GenerationOptions = field(default_factory=GenerationOptions)
    # An evaluation whose model cannot be reached must fail, not print a table of zeros: stop when the first
    # `abort_after_errors` items all failed at the model, and fail a mode in which more than
    # `max_error_fraction` of the items did (0 and 1.0 turn these off).
    abort_after_errors: int = 5
    max_error_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.guide_at is not None:
            check_guide_at(self.guide_at)


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
    tools: ToolSet | None = None,
) -> ItemRecord:
    started = time.monotonic()
    guidance: list[Experience] = []
    shots: list[Shot] = []
    if mode == Mode.FLEX:
        assert library is not None and retriever is not None
        guidance = select_guidance(
            retriever,
            library,
            task.render(problem),
            budget_tokens=config.budget_tokens,
            min_shared=config.min_shared,
            case_min_shared=(
                case_gate(agents.actor.prompt_kind) if config.case_min_shared is None else config.case_min_shared
            ),
            category=problem.category,
        )
    elif mode == Mode.ICL:
        shots = worked_shots(task, train, problem, config.icl_k, config.seed)

    review = mode == Mode.FLEX and resolve_guide_at(config.guide_at, agents.actor) == "review"
    actor_options = config.actor
    if config.repeats > 1:
        # A distinct seed per sample, so that samples differ wherever the backend honours seeds.
        actor_options = replace(config.actor, seed=(config.actor.seed or 0) + repeat)
    # The agent's loop: attempts judged blind, with retries on the feedback; flex at review is the same loop, its
    # critic checking against the retrieved lessons.
    episode = Episode()
    try:
        await run_episode(
            task,
            problem,
            agents=agents,
            placement=place(guidance, review=review, category=problem.category),
            shots=shots,
            rounds=resolve_rounds(config.agent_rounds, agents.actor),
            review=mode == Mode.AGENT or review,
            tools=tools,
            actor=actor_options,
            critic=config.critic,
            episode=episode,
        )
        error = None
    except ModelError as exc:
        error = str(exc)
    prompt_text, reply, usage = episode.prompt_text, episode.reply, episode.usage
    retrieved = [e.id for e in guidance] + [i for i in episode.searched if i not in {e.id for e in guidance}]
    score = task.score(reply, problem)
    return ItemRecord(
        mode=str(mode),
        problem_id=problem.id,
        question=task.render(problem),
        reference=problem.answer,
        category=problem.category,
        prompt=prompt_text,
        reply=reply,
        extracted=score.extracted,
        correct=score.correct and error is None,
        score=score.value if error is None else 0.0,
        retrieved=retrieved,
        calls=episode.calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        rounds=episode.rounds,
        error=error,
        repeat=repeat,
        score_data=score.data if error is None else {},
        tool_calls=len(episode.steps),
        steps=episode.steps,
        seconds=round(time.monotonic() - started, 3),
    )


def check_modes(modes: Sequence[Mode], *, library: Library | None, train: Sequence[Problem] | bool) -> None:
    """ConfigError when a mode lacks what it needs; LibraryError when flex mode's library cannot take the
    usage counters it will write (one opened read-only gets none). Cheap, and called before any model call (the
    CLI calls it before it even builds the models)."""
    if Mode.FLEX in modes and library is None:
        raise ConfigError("mode 'flex' needs an experience library: pass --library")
    if Mode.ICL in modes and not train:
        raise ConfigError("mode 'icl' needs training examples: pass --train with a JSONL file")
    if Mode.FLEX in modes and library is not None and not library.read_only:
        library.check_writable()


class _Outage:
    """Watches items as they finish: raises ModelError when the model looks unreachable (the first
    `abort_after` items all failed), so a dead endpoint costs seconds, not a whole test set."""

    def __init__(self, abort_after: int) -> None:
        self.abort_after = abort_after
        self.failed_from_start = 0
        self.any_answered = False
        self.verdict = ""  # set once the model is judged unreachable

    def see(self, item: ItemRecord) -> None:
        if item.error is None:
            self.any_answered = True
            return
        self.failed_from_start += not self.any_answered
        if not self.any_answered and self.abort_after and self.failed_from_start >= self.abort_after:
            self.verdict = self.verdict or (
                f"the first {self.failed_from_start} items all failed at the model, so it looks unreachable; "
                f"last error: {item.error}"
            )
            raise ModelError(self.verdict)

    def check(self) -> None:
        """Raise the verdict, if there is one: an item that gets its turn after it must not call the model (the
        cancellation of the others takes a few turns of the event loop, enough for a fast server to be sent
        several more requests)."""
        if self.verdict:
            raise ModelError(self.verdict)


def check_errors(result: ModeResult, max_fraction: float) -> None:
    """ModelError when more than `max_fraction` of a mode's items failed at the model: its accuracy would
    measure the outage, not the model."""
    samples = result.samples or result.n
    if samples and max_fraction < 1.0 and result.errors > max_fraction * samples:
        last = next((i.error for i in reversed(result.items) if i.error), "")
        raise ModelError(
            f"{result.errors} of {samples} {result.mode} items failed at the model (more than "
            f"{max_fraction:.0%}), so the results would be meaningless; last error: {last}"
        )


async def _gather_or_cancel(jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Like `asyncio.gather`, but the first exception cancels the jobs still running instead of letting them
    spend calls on a run that has already failed."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


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
    done: Mapping[tuple[str, str, int], ItemRecord] | None = None,
) -> list[ModeResult]:
    """Evaluate `problems` in each of `modes`. `on_item` sees every item as it finishes; `done` holds items finished
    earlier, by (mode, problem id, repeat), which are taken as they are rather than asked again: how an
    interrupted evaluation continues (the caller keeps them, e.g. from `on_item`, and decides they still apply)."""
    config = config or EvalConfig()
    done = done or {}
    check_modes(modes, library=library, train=train)
    # Resolved once, so an unknown name fails before any model call.
    retriever = get_retriever(config.retriever, library) if library is not None and Mode.FLEX in modes else None
    tool_names = parse_tools(config.tools)
    if tool_names:
        check_tool_model(agents.actor)
    agents = _sharing_replies(agents, modes, config)
    shown = library.shown() if library is not None else None
    toolsets = {
        Mode.AGENT: make_toolset([n for n in tool_names if n != "experience"], limits=config.sandbox),
        Mode.FLEX: make_toolset(tool_names, shown=shown, retriever=retriever, limits=config.sandbox)
        if Mode.FLEX in modes
        else None,
    }
    semaphore = asyncio.Semaphore(max(1, config.concurrency))
    repeats = max(1, config.repeats)
    outage = _Outage(config.abort_after_errors)
    results = []
    for mode in modes:
        started = time.monotonic()

        async def run(problem: Problem, repeat: int, mode: Mode = mode) -> ItemRecord:
            earlier = done.get((str(mode), problem.id, repeat))
            if earlier is not None:
                if on_item:
                    on_item(earlier)
                return earlier
            async with semaphore:
                outage.check()
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
                    tools=toolsets.get(mode),
                )
            if on_item:
                on_item(record)
            outage.see(record)
            return record

        items = await _gather_or_cancel([run(p, r) for p in problems for r in range(repeats)])
        if library is not None and mode == Mode.FLEX and not library.read_only:
            # What was shown, and whether the answer it was shown for was right: the helped/hurt counters (not
            # kept for a library opened read-only, nor again for items taken from `done`).
            earlier = {id(item) for item in done.values()}
            fresh = [item for item in items if id(item) not in earlier]
            with library.transaction():
                library.record_retrieval([i for item in fresh for i in item.retrieved])
                for item in fresh:
                    if item.error is None and item.retrieved:
                        library.record_outcome(item.retrieved, helped=item.correct)
        result = summarise(str(mode), task, problems, items, time.monotonic() - started, repeats, config.seed)
        check_errors(result, config.max_error_fraction)
        results.append(result)
    return results


def _sharing_replies(agents: Agents, modes: Sequence[Mode], config: EvalConfig) -> Agents:
    """The agent baseline's first attempt is vanilla's request, word for word: evaluated together on a model that
    answers a request the same way every time (an embedded one at temperature 0), the agent takes vanilla's reply
    rather than ask for it again (`ReplyMemo`; its items still count that call and its tokens, as asked alone)."""
    if not (Mode.VANILLA in modes and Mode.AGENT in modes and is_deterministic(agents.actor, config.actor)):
        return agents
    return Agents(
        ReplyMemo(agents.actor),
        critic=agents.critic,
        distiller=agents.distiller,
        updater=agents.updater,
        meter=agents.meter,
    )


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
        item_seconds=round(sum(i.seconds for i in items), 3),
        errors=sum(i.error is not None for i in items),
        tool_calls=sum(i.tool_calls for i in items),
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


def check_tool_model(model: ChatModel) -> None:
    """Tools are a conversation of replies and outputs: a base model, which only continues a text, cannot hold
    one. Checked before any model call."""
    if model.prompt_kind == PromptKind.COMPLETION:
        raise ConfigError(f"--tools needs a chat model; {model.name} is a completion (base) model")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
