"""One episode of forward guidance, the step every entry point runs: the retrieved experience placed (in the
actor's prompt, or given to a reviewing critic), the actor's attempt (one reply, or a tool-using exchange), and,
where the episode reviews, the critic's blind verdict and a retry on its feedback.

Evaluation (every mode), `solve` and `flexlearn.solve` run their answers through `run_episode`; exploration, whose
critic sees the reference and whose verdict is the task's, shares `attempt` and `calls_of` with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flexlearn.agents.actor import Attempt, Feedback, Shot, act, actor_prompt
from flexlearn.agents.critic import judge
from flexlearn.agents.tool_actor import ToolAttempt, act_with_tools
from flexlearn.agents.tools import ToolSet
from flexlearn.errors import ConfigError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.loop.agents import Agents
from flexlearn.models.base import ChatModel, GenerationOptions, PromptKind, Usage
from flexlearn.models.embedded import is_embedded_instruct
from flexlearn.records import ToolStepRecord
from flexlearn.retrieval.guidance import of_kind
from flexlearn.tasks.base import Problem, Task

# Where retrieved experience goes: "prompt" (the actor's context, the paper's way) or "review" (the critic checks
# each attempt against it; the actor sees the worked cases).
GUIDE_AT = ("prompt", "review")


def guide_at_default(actor: ChatModel) -> str:
    """Where experience is used when not told: at review for an embedded chat model, in the actor's prompt (the
    paper's way) for every other. Lessons in its prompt cost the embedded Qwen2.5-Coder 1.5B 8-10 points on
    GSM8k, however good they were; at review they cost nothing (README, "Does learning help?")."""
    if actor.prompt_kind == PromptKind.CHAT and is_embedded_instruct(actor.name):
        return "review"
    return "prompt"


def rounds_default(actor: ChatModel) -> int:
    """Attempts of the review loop (agent mode, flex at review, `solve` at review) when not told: 3; 2 for a local
    model, as its learning's rounds. On XBRL Formula the 1.5B's blind critic sent 11 of 200 attempts back and
    none of the retries turned wrong into right: a third attempt, reached only when the second is rejected too,
    costs a round of calls for nothing measurable."""
    return 2 if actor.name.startswith("local:") else 3


def resolve_rounds(rounds: int | None, actor: ChatModel) -> int:
    """`rounds`, or the default for `actor` when None."""
    return rounds_default(actor) if rounds is None else rounds


def check_guide_at(guide_at: str) -> str:
    """`guide_at`, or ConfigError naming the places there are."""
    if guide_at not in GUIDE_AT:
        raise ConfigError(f"unknown guide_at {guide_at!r}; choose from {', '.join(GUIDE_AT)}")
    return guide_at


def resolve_guide_at(guide_at: str | None, actor: ChatModel) -> str:
    """`guide_at` checked, or the actor's default when None."""
    return guide_at_default(actor) if guide_at is None else check_guide_at(guide_at)


@dataclass
class Placement:
    """Where each retrieved entry goes: into the actor's prompt (`shown`), or to the reviewing critic (`lessons`)."""

    shown: list[Experience]
    lessons: list[Experience] = field(default_factory=list)


def place(guidance: list[Experience], *, review: bool, category: str = "") -> Placement:
    """In the prompt, everything. At review, the critic gets every entry to check attempts against; the actor sees
    only the worked cases of problems like its own (those that passed the case gate), the form a small model
    follows, and the failed cases of its own kind (`category`), whose right answers show what a problem of
    exactly this kind expects."""
    if not review:
        return Placement(list(guidance))
    shown = [e for e in guidance if e.level == Level.CASE and (e.zone == Zone.GOLDEN or of_kind(e, category))]
    return Placement(shown, list(guidance))


async def attempt(
    actor: ChatModel,
    task: Task,
    problem: Problem,
    *,
    guidance: Sequence[Experience] = (),
    shots: Sequence[Shot] = (),
    feedback: Sequence[Feedback] = (),
    tools: ToolSet | None = None,
    options: GenerationOptions | None = None,
) -> Attempt | ToolAttempt:
    """The actor's attempt at a problem: one reply, or, with `tools`, the exchange of code and output that ends in
    one."""
    prompt = actor_prompt(task, problem, guidance=list(guidance), shots=list(shots), feedback=list(feedback))
    if tools is None:
        return await act(actor, prompt, options)
    return await act_with_tools(actor, prompt, tools=tools, options=options, answer_format=task.answer_format)


def calls_of(made: Attempt | ToolAttempt) -> int:
    """The model calls an attempt took."""
    return made.calls if isinstance(made, ToolAttempt) else 1


def seen_of(made: Attempt | ToolAttempt) -> str:
    """The attempt as a critic or a distiller reads it: with tools, the code and its output too."""
    return made.transcript() if isinstance(made, ToolAttempt) else made.text


@dataclass
class Episode:
    """What one episode did: the last reply and the prompt that produced it, and what it took."""

    reply: str = ""
    prompt_text: str = ""
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    rounds: int = 0
    steps: list[ToolStepRecord] = field(default_factory=list)
    # Experience ids the experience tool showed (retrieved guidance is the caller's to record).
    searched: list[str] = field(default_factory=list)


async def run_episode(
    task: Task,
    problem: Problem,
    *,
    agents: Agents,
    placement: Placement | None = None,
    shots: Sequence[Shot] = (),
    rounds: int = 1,
    review: bool = False,
    tools: ToolSet | None = None,
    actor: GenerationOptions | None = None,
    critic: GenerationOptions | None = None,
    episode: Episode | None = None,
) -> Episode:
    """Up to `rounds` attempts when `review`, else one. After each attempt but the last, the critic judges it blind
    (it never sees the reference), against `placement.lessons`; a verdict of correct ends the episode, any other
    sends its feedback to the actor's next attempt. `episode` (a fresh one when None) is filled in as the episode
    goes, so a caller that catches a model error still has what was done before it."""
    placement = placement or Placement([])
    done = episode if episode is not None else Episode()
    feedback: list[Feedback] = []
    for rnd in range(rounds if review else 1):
        made = await attempt(
            agents.actor,
            task,
            problem,
            guidance=placement.shown,
            shots=shots,
            feedback=feedback,
            tools=tools,
            options=actor,
        )
        done.calls += calls_of(made)
        done.usage = done.usage + made.usage
        done.rounds = rnd + 1
        done.prompt_text, done.reply = made.prompt_text, made.text
        if isinstance(made, ToolAttempt):
            done.steps += [s.model_copy(update={"round": rnd}) for s in made.steps]
            done.searched += [i for i in made.retrieved if i not in done.searched]
        if not review or rnd == rounds - 1:
            break
        verdict = await judge(
            agents.critic,
            question=task.render(problem),
            attempt=seen_of(made),
            extracted=task.extract_answer(made.text),
            options=critic,
            meter=agents.meter,
            lessons=placement.lessons,
        )
        done.usage, done.calls = done.usage + verdict.critique.usage, done.calls + 1
        if verdict.correct:
            break
        feedback.append(Feedback(made.text, verdict.critique.diagnosis, verdict.critique.next_step))
    return done
