"""Forward exploration of one problem: up to R rollouts x T rounds of actor <-> critic.

Each rollout starts afresh; within a rollout the actor retries with the critic's feedback on its earlier
attempts. The task's scorer gives the verdict (the critic never grades when a reference exists). The critic's
feedback is checked span by span with the same scorer, so it never hands the answer back in any form the scorer
would accept (`agents/leaks.py`). Exploration stops at the first verified success unless asked to run every
rollout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from flexlearn.agents.actor import Feedback, worked_shots
from flexlearn.agents.critic import critique
from flexlearn.agents.leaks import redact
from flexlearn.agents.tools import ToolSet
from flexlearn.experience import Experience
from flexlearn.loop.episode import attempt, calls_of, seen_of
from flexlearn.models.base import ChatModel, GenerationOptions, PromptKind, Usage
from flexlearn.models.embedded import is_embedded_instruct
from flexlearn.models.middleware import Meter
from flexlearn.tasks.base import Problem, Task, critic_reference
from flexlearn.trajectory import StepRecord, Trajectory


@dataclass
class ExploreConfig:
    rollouts: int = 3
    rounds: int = 5
    stop_on_success: bool = True
    # Worked training examples in the actor's prompt while exploring. A base model follows examples, not
    # instructions: without a few it rarely solves anything, and the library would hold only warnings.
    shots: int = 0
    # The critic sees only the verdict, never the reference answer (the feedback cannot leak what it never saw).
    blind_critic: bool = False
    # Tools of the actor while exploring ("python", "experience"); empty: one reply per attempt.
    tools: tuple[str, ...] = ()
    actor: GenerationOptions = field(default_factory=GenerationOptions)
    critic: GenerationOptions = field(default_factory=GenerationOptions)


def exploration_defaults(actor: ChatModel) -> ExploreConfig:
    """The paper's 3 rollouts x 5 rounds for capable models. An embedded model on a laptop's cores gets fewer
    rounds (its critic's feedback helps little, and every round costs seconds), and a base model gets worked
    examples in its prompt, without which it rarely solves anything to learn from. An embedded instruction model
    explores each problem once: the library behind its measured gain on XBRL Formula (README, "Does learning
    help?") was learned so, in ~250 s a problem on one core; three rollouts were not measured to do better and
    cost up to three times as much on the problems it does not solve."""
    local = actor.name.startswith("local:")
    base = actor.prompt_kind == PromptKind.COMPLETION
    instruct = not base and is_embedded_instruct(actor.name)
    return ExploreConfig(rollouts=1 if instruct else 3, rounds=2 if local else 5, shots=3 if base else 0)


# The temperature of a greedy actor's later rollouts: without it they would repeat the first one word for word.
ROLLOUT_TEMPERATURE = 0.7


def rollout_options(config: ExploreConfig, problem: Problem, rollout: int) -> GenerationOptions:
    """The actor's options for one rollout. The first is the configured one. A later rollout of a greedy actor
    (temperature 0, or unset, which the embedded backend reads as 0) with no worked examples to vary would
    repeat the first exactly, at full cost: it samples at ROLLOUT_TEMPERATURE instead, with a seed drawn from
    the problem and the rollout, so a rerun (and a resumed run) explores the same way."""
    options = config.actor
    if rollout == 0 or config.shots or (options.temperature or 0.0) > 0.0:
        return options
    digest = hashlib.sha256(f"{problem.id}/{rollout}".encode()).digest()
    return replace(options, temperature=ROLLOUT_TEMPERATURE, seed=int.from_bytes(digest[:4], "big") >> 1)


async def explore(
    problem: Problem,
    *,
    task: Task,
    actor: ChatModel,
    critic: ChatModel,
    config: ExploreConfig,
    guidance: list[Experience] | None = None,
    meter: Meter | None = None,
    pool: Sequence[Problem] = (),
    tools: ToolSet | None = None,
) -> Trajectory:
    """Explore one problem. `pool` is the training set that worked examples are drawn from (`config.shots`)."""
    steps: list[StepRecord] = []
    usage = Usage()
    calls = 0
    for rollout in range(config.rollouts):
        feedback: list[Feedback] = []
        # Each rollout sees different examples, so rollouts explore differently even at temperature 0.
        shots = worked_shots(task, pool, problem, config.shots, seed=f"{problem.id}/{rollout}") if config.shots else []
        actor_options = rollout_options(config, problem, rollout)
        for rnd in range(config.rounds):
            made = await attempt(
                actor,
                task,
                problem,
                guidance=guidance or [],
                shots=shots,
                feedback=feedback,
                tools=tools,
                options=actor_options,
            )
            calls += calls_of(made)
            seen = seen_of(made)  # with tools, code and output, so the distiller learns from tool use too
            usage = usage + made.usage
            score = task.score(made.text, problem)
            step = StepRecord(rollout, rnd, seen, score.extracted, score.correct)
            steps.append(step)
            if score.correct:
                break
            if rnd == config.rounds - 1:
                break  # no retry follows, so feedback would be wasted
            note = await critique(
                critic,
                question=task.render(problem),
                attempt=seen,
                extracted=score.extracted,
                reference=None if config.blind_critic else critic_reference(task, problem),
                options=config.critic,
                meter=meter,
                leak_check=partial(redact, task, problem),
            )
            usage, calls = usage + note.usage, calls + 1
            step.feedback = f"{note.diagnosis} Next: {note.next_step}"
            step.critic_error = note.error or ""
            feedback.append(Feedback(made.text, note.diagnosis, note.next_step))
        if config.stop_on_success and any(s.correct for s in steps):
            break
    return Trajectory(problem.id, steps, usage, calls, guidance=[e.id for e in guidance or []])
