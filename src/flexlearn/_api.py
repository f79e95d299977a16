"""The functions `import flexlearn` offers: connect to a model, learn, evaluate, solve, and let a user's own agent
learn from experience (`guidance` for its prompt, `record` for its outcomes).

Each function that calls a model comes twice: `alearn`, `aevaluate`, `asolve`, `arecord` for async code, and
`learn`, `evaluate`, `solve`, `record`, which block until done. The blocking ones run the coroutine on one event
loop that flexlearn keeps in a background thread (`flexlearn._sync`), so they work the same in a script and in a
notebook whose own loop is running. Use one model from either the blocking or the async functions, not both: its
connections and concurrency limit belong to the loop that first used it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flexlearn._sync import run_sync
from flexlearn.engine import Engine, Guidance, Problems, guidance_for
from flexlearn.errors import ConfigError
from flexlearn.library.outcomes import Outcome
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.absorb import Absorbed
from flexlearn.loop.absorber import Queued
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import Mode
from flexlearn.loop.learn import LearnSummary, Progress
from flexlearn.loop.solve import Solution
from flexlearn.models.base import ChatModel, PromptKind
from flexlearn.models.middleware import Meter, RetryPolicy, build_stack
from flexlearn.models.recipe import ModelRecipe, remember, resolve_uri
from flexlearn.models.uri import from_uri, parse_prompt_kind
from flexlearn.records import ItemRecord, ModeResult
from flexlearn.retrieval import DEFAULT_RETRIEVER
from flexlearn.settings import EVAL, LEARN, SOLVE, EvalSettings, LearnSettings, SolveSettings
from flexlearn.tasks import Task

P = ParamSpec("P")
T = TypeVar("T")

BUDGET_TOKENS = DEFAULT_LIMITS.retrieval_budget_tokens


def connect(
    uri: str | None = None,
    *,
    concurrency: int = 4,
    retry: RetryPolicy | bool = True,
    meter: Meter | None = None,
    prompt_kind: PromptKind | str | None = None,
    timeout: float = 120.0,
) -> ChatModel:
    """The model a URI names, ready for a run: retries with backoff, at most `concurrency` calls in flight, and
    every call metered by role.

    `uri` is ``openai:MODEL@BASE_URL``, ``openai:MODEL``, ``anthropic:MODEL``, ``local`` or
    ``local:/path/model.gguf``; None reads FLEX_MODEL, else ``local``. `retry` is a `RetryPolicy`, True for the
    default one, or False for none. Pass one `meter` to several models to count their calls together (it is the
    returned model's ``.meter``). `prompt_kind` is ``chat`` or ``completion`` (base models); None picks the
    backend's. `timeout` is seconds per HTTP request.
    """
    kind = parse_prompt_kind(prompt_kind, "prompt_kind (--prompt-kind, FLEX_PROMPT_KIND)")
    policy = RetryPolicy() if retry is True else (retry or None)
    model = from_uri(uri, prompt_kind=kind, timeout=timeout)
    stack = build_stack(model, max_concurrency=max(1, concurrency), retry=policy, meter=meter or Meter())
    # How to build it again elsewhere (a Ray worker rebuilds the run's models: `executor="ray"` in `learn`).
    return remember(stack, ModelRecipe(resolve_uri(uri), stack.prompt_kind, timeout, policy))


def guidance(
    library: Library,
    question: str,
    *,
    budget_tokens: int = BUDGET_TOKENS,
    retriever: str = DEFAULT_RETRIEVER,
    category: str = "",
    guide_at: str = "prompt",
) -> Guidance:
    """The experience block for `question`, to paste into your own agent's prompt: the entries retrieved within
    `budget_tokens`, chosen and rendered exactly as flex mode shows them to a chat actor (fenced reference
    material, general lessons first, a worked case only when it shares enough of the question's words). Empty
    when nothing relevant is in the library. `category` names the kind of problem (as a data file's "category"
    field does): the library's worked cases of that kind are then preferred. `guide_at="review"` places them as
    flex mode's review does: the text holds only the worked cases for the agent, and `.lessons` the principles and
    patterns as a checklist for the agent's reviewer. The entries' retrieval counters go up; pass the result to
    `record(..., guidance=...)` with the outcome to count whether they helped."""
    return guidance_for(
        library, question, budget_tokens=budget_tokens, retriever=retriever, category=category, guide_at=guide_at
    )


async def alearn(
    problems: Problems,
    *,
    task: str | Task,
    agents: Agents | ChatModel,
    library: Library,
    rollouts: int | None = LEARN.rollouts,
    rounds: int | None = LEARN.rounds,
    all_rollouts: bool = LEARN.all_rollouts,
    explore_shots: int | None = LEARN.explore_shots,
    concurrency: int = LEARN.concurrency,
    explore_with_library: bool = LEARN.explore_with_library,
    blind_critic: bool = LEARN.blind_critic,
    distiller_slots: bool = LEARN.distiller_slots,
    tools: str | Sequence[str] = LEARN.tools,
    retriever: str = LEARN.retriever,
    temperature: float | None = LEARN.temperature,
    max_tokens: int | None = LEARN.max_tokens,
    executor: str = LEARN.executor,
    ray_address: str | None = LEARN.ray_address,
    resume: bool | str = False,
    source: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> LearnSummary:
    """Explore every problem, distil each trajectory and fold the lessons into `library`.

    The settings are `flexlearn.settings.LearnSettings`, the options of `flex learn` under the same names:
    `rollouts` x `rounds` of actor and critic per problem (default: the paper's 3 x 5; 3 x 2 for a local model;
    `all_rollouts` runs them all even after a success), `explore_shots` worked training examples in the actor's
    prompt (default 0; 3 for base models), `concurrency` model calls in flight. `temperature` and `max_tokens`
    apply to the actor. `explore_with_library=True` shows each problem's actor what the library holds so far (as
    flex mode does) and counts the verdicts as helped/hurt; `blind_critic=True` hides the reference answer from
    the critic; `tools` ("python", "experience") lets the actor run code in a sandbox and search the library while
    exploring; `retriever` is how the updater finds a lesson's nearest entries; `distiller_slots=True` holds a
    chat-model distiller to one principle and one pattern per zone (measured worse with Qwen2.5-Coder 1.5B; see
    the README).

    `executor="ray"` runs each problem's exploration and distillation as Ray tasks on the cluster at `ray_address`
    (default: RAY_ADDRESS, a cluster started on this machine, else a local instance; a process already connected
    to Ray stays on its cluster); the workers build the models again from their URIs, so the agents' models must
    come from `connect`. The updater's decisions and every write stay in this process (needs the `ray` extra).

    `resume=True` continues the library's newest interrupted learn run over these problems, `resume="RUN_ID"` that
    run. `source` names where the problems came from in the run's record (default: the file's path). The run, with
    each role's model, is recorded in the library; `on_progress` is called as each problem finishes.
    """
    engine = Engine.of(task, agents, library, learning=LearnSettings.pick(locals()))
    return await engine.learn(problems, resume=resume, source=source, on_progress=on_progress)


async def aevaluate(
    problems: Problems,
    *,
    task: str | Task,
    agents: Agents | ChatModel,
    library: Library | None = None,
    train: Problems = (),
    modes: str | Sequence[str | Mode] | None = EVAL.modes,
    icl_k: int = EVAL.icl_k,
    agent_rounds: int | None = EVAL.agent_rounds,
    budget_tokens: int = EVAL.budget_tokens,
    retriever: str = EVAL.retriever,
    min_shared: int = EVAL.min_shared,
    case_min_shared: int | None = EVAL.case_min_shared,
    guide_at: str | None = EVAL.guide_at,
    concurrency: int = EVAL.concurrency,
    seed: int = EVAL.seed,
    repeats: int = EVAL.repeats,
    temperature: float | None = EVAL.temperature,
    max_tokens: int | None = EVAL.max_tokens,
    tools: str | Sequence[str] = EVAL.tools,
    on_item: Callable[[ItemRecord], None] | None = None,
    done: Mapping[tuple[str, str, int], ItemRecord] | None = None,
) -> list[ModeResult]:
    """Evaluate in the paper's modes, one `ModeResult` each (accuracy, 95% interval, calls, every item).

    The settings are `flexlearn.settings.EvalSettings`, the options of `flex eval` under the same names.
    `modes`: any of vanilla, icl, agent, flex (a list, or one comma-separated string); None (the default) runs
    every mode the inputs allow: vanilla and agent, icl when `train` is given, flex when `library` is. flex needs
    `library`; icl needs `train` (its worked examples are drawn from it, `icl_k` at a time); agent retries up to
    `agent_rounds` times on the critic's blind verdict (None: 3, and 2 for a local model). `guide_at="review"` moves
    flex mode's retrieved principles and patterns from the actor's prompt to that critic: the actor solves with the
    question (and retrieved worked cases) and retries when the critic, checking the attempt against the lessons,
    finds a mistake; "prompt" keeps them in the actor's prompt, the paper's way; None (the default) is review for an
    embedded chat model (`local:qwen2.5-coder-*`) and prompt for every other. `min_shared` > 0 shows flex mode only
    the hits sharing that many content words with the question, `case_min_shared` the worked cases alone. `repeats`
    samples per problem (use a `temperature`). `tools` ("python", "experience"; a list or "python,experience") lets
    the agent and flex actors run code in a sandbox and, in flex mode, search the library; each item then records
    its tool steps. `on_item` is called with each finished item; `done` holds items an interrupted evaluation
    finished, keyed by (mode, problem id, repeat), which are taken as they are rather than run again.
    """
    engine = Engine.of(task, agents, library, evaluation=EvalSettings.pick(locals()))
    return await engine.evaluate(problems, train=train, on_item=on_item, done=done)


async def asolve(
    question: str,
    *,
    task: str | Task,
    agents: Agents | ChatModel,
    library: Library | None = None,
    answer: str | None = None,
    category: str = "",
    budget_tokens: int = SOLVE.budget_tokens,
    retriever: str = SOLVE.retriever,
    guide_at: str | None = SOLVE.guide_at,
    review_rounds: int | None = SOLVE.review_rounds,
    temperature: float | None = SOLVE.temperature,
    max_tokens: int | None = SOLVE.max_tokens,
    tools: str | Sequence[str] = SOLVE.tools,
) -> Solution:
    """Answer one question with the actor, guided by experience from `library` (none without one), as flex mode
    answers an evaluation item. The settings are `flexlearn.settings.SolveSettings`, the options of `flex solve`
    under the same names: `guide_at` "prompt" or "review" (None: review for an embedded chat model, as there; up to
    `review_rounds` attempts at review, None: 3, and 2 for a local model). `category` names its kind of problem,
    whose worked cases are then preferred. With `tools` ("python", "experience") the actor may run code in a sandbox
    and search the library; the solution's `steps` show each tool run. With a known `answer` the reply is scored
    (`Solution.correct`) and the entries shown count as having helped or hurt."""
    engine = Engine.of(task, agents, library, solving=SolveSettings.pick(locals()))
    return await engine.solve(question, answer=answer, category=category)


async def arecord(
    library: Library,
    question: str,
    attempt: str,
    *,
    correct: bool,
    agents: Agents | ChatModel | None = None,
    answer: str | None = None,
    feedback: str | None = None,
    task: str | Task | None = None,
    problem_id: str | None = None,
    run_id: str | None = None,
    actor: str = "external",
    guidance: Guidance | Sequence[str] | None = None,
    wait: bool = True,
) -> Absorbed | Queued:
    """Learn from one outcome of your own agent: its `attempt` at `question` and whether it was `correct`.

    The attempt is distilled and absorbed exactly as an explored trajectory is in `learn` (the distiller writes
    lessons, the updater adds, merges or discards each against its nearest entries, all in one transaction), so
    the next `guidance` for a similar question carries it. `answer` is the reference answer when you know it;
    `feedback` says what went wrong or right (a user's correction, a test's output). `task` names the category
    (a `Task`, or any label); `actor` names your agent in the lessons' provenance. Only the distiller and the
    updater of `agents` are called.

    `guidance` is what `guidance()` returned for this question (or the ids it showed): those entries are counted
    as having helped (`correct`) or hurt.

    Each call is recorded as a run of kind ``record`` (`run_id`, new by default; pass one to group several
    outcomes) with the problem's trajectory, so the library's event log says where every lesson came from.

    `wait=True` (the default) returns what was absorbed (`Absorbed`: the updater's `actions`, the
    `experience_ids` added or merged into) once it is in the library. `wait=False` only queues the outcome in the
    library file (one short write, no model call, `agents` not needed) and returns a `Queued` with its `id` at
    once; `flexlearn.loop.absorber.absorb` (or `flex library queue LIB --absorb`, or `flex mcp --model`) absorbs
    the queue later, each outcome exactly once, and `library.outcome(id)` says where one stands.
    """
    outcome = Outcome.of(
        question,
        attempt,
        correct=correct,
        answer=answer,
        feedback=feedback,
        category=task.name if isinstance(task, Task) else (task or ""),
        extracted=task.extract_answer(attempt) if isinstance(task, Task) else None,
        problem_id=problem_id,
        run_id=run_id,
        actor=actor,
        guidance=guidance.ids if isinstance(guidance, Guidance) else list(guidance or []),
    )
    if not wait:
        return Queued(library.enqueue_outcome(outcome))
    if agents is None:
        raise ConfigError("record needs agents (its distiller and updater write the lessons), unless wait=False")
    # `task` may be any label here (the outcome's category): the engine needs no task to record.
    return await Engine.of(task if isinstance(task, Task) else None, agents, library).record(outcome)


def _blocking(fn: Callable[P, Coroutine[Any, Any, T]], name: str) -> Callable[P, T]:
    @wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(fn(*args, **kwargs))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Blocking form of `{fn.__name__}`, for scripts and notebooks.\n\n{fn.__doc__ or ''}"
    return call


learn = _blocking(alearn, "learn")
evaluate = _blocking(aevaluate, "evaluate")
solve = _blocking(asolve, "solve")
record = _blocking(arecord, "record")
