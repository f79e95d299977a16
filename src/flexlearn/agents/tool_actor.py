"""The tool-using actor: the model writes fenced ```python blocks, each runs (in the sandbox, or against the
library for an experience call), and the output comes back as the next user message, until a reply has no
code (the final answer) or a bound is reached (then the model is asked once for its final answer).

Works with any chat model through plain text: no native tool-call API is needed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from flexlearn.agents.actor import Attempt, prompt_as_text
from flexlearn.agents.templates import fill, shorten
from flexlearn.agents.tools import ToolSet, ask_library, library_calls
from flexlearn.errors import ConfigError
from flexlearn.models.base import ChatModel, GenerationOptions, Message, Prompt, PromptKind, Usage
from flexlearn.records import ToolStepRecord
from flexlearn.sandbox import SandboxSession, run_python

# A python fence; an unclosed one at the end (a reply cut at max_tokens) still counts, so the model hears why.
_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
# Small models often go on to write the output they expect; what follows such a line is invented, not run.
_INVENTED = re.compile(r"^[ \t]*(?:\*\*)?(?:Output|Result|Execution result)s?(?:\*\*)?:", re.M | re.I)


@dataclass
class ToolAttempt(Attempt):
    """An `Attempt` (text is the final reply, usage summed over every call, prompt_text the last prompt, with
    every observation in it) and the tool steps that led to it."""

    steps: list[ToolStepRecord] = field(default_factory=list)  # their `round` is set by the caller
    calls: int = 0  # model calls
    retrieved: list[str] = field(default_factory=list)  # experience ids the experience tool showed
    stopped: str | None = None  # "steps" or "tokens" when a bound ended the tool use

    @property
    def tool_calls(self) -> int:
        return len(self.steps)

    def transcript(self, code_chars: int = 600, output_chars: int = 300) -> str:
        """The attempt as the distiller and the critic read it: each step's code and (shortened) output, then
        the final reply, so that a lesson about how the tools were used can be learned."""
        parts = [
            f"[{s.kind}]\n{shorten(s.input, code_chars)}\n[output]\n{shorten(s.observation, output_chars)}"
            for s in self.steps
        ]
        return "\n\n".join([*parts, self.text.strip()]) if parts else self.text


def split_reply(text: str) -> tuple[str, list[str]]:
    """The reply up to any output it invented, and the python blocks in that part."""
    first = _BLOCK.search(text)
    if first is not None and (invented := _INVENTED.search(text, first.end())) is not None:
        text = text[: invented.start()].rstrip()
    return text, [m.group(1).strip("\n") for m in _BLOCK.finditer(text) if m.group(1).strip()]


def with_tools(prompt: Prompt, tools: ToolSet) -> Prompt:
    """The actor's prompt with the tools explained at the end of its system message, and a cue to use them at
    the end of its question."""
    messages = list(prompt.messages)
    if messages and messages[0].role == "system":
        messages[0] = Message("system", f"{messages[0].content}\n\n{tools.instructions()}")
    else:
        messages.insert(0, Message("system", tools.instructions()))
    if tools.python and messages[-1].role == "user":
        # A small model reads the end of the user turn most closely; left alone it does the arithmetic in prose.
        messages[-1] = Message("user", f"{messages[-1].content}\n\n{fill('tool_actor_cue').strip()}")
    return Prompt(messages=messages, stop=list(prompt.stop))


async def act_with_tools(
    model: ChatModel,
    prompt: Prompt,
    *,
    tools: ToolSet,
    options: GenerationOptions | None = None,
    max_steps: int | None = None,
    max_tokens_total: int | None = None,
    answer_format: str = "",
) -> ToolAttempt:
    """Solve with tools: reply, run its blocks, show the output, repeat. Bounded by `max_steps` tool runs and
    `max_tokens_total` tokens (defaults from `tools.bounds`); past either, one last call asks for the answer.
    `answer_format` (the task's) is repeated after each output: a small model that has read code and output
    since the system message forgets how its final answer must end."""
    if model.prompt_kind == PromptKind.COMPLETION:
        raise ConfigError(f"tools need a chat model; {model.name} is a completion (base) model")
    bounds = tools.bounds
    max_steps = bounds.max_steps if max_steps is None else max_steps
    max_tokens_total = bounds.max_tokens_total if max_tokens_total is None else max_tokens_total
    messages = with_tools(prompt, tools).messages
    session = SandboxSession()
    attempt = ToolAttempt(text="", usage=Usage(), prompt_text="")
    searches = spent = 0
    for turn in range(max_steps + 2):  # every turn but the last runs at least one step, so this is never reached
        current = Prompt(messages=list(messages))
        reply = await model.generate(current, role="actor", options=options)
        attempt.usage += reply.usage
        spent += _tokens(reply.usage, current, reply.text)
        attempt.calls += 1
        attempt.prompt_text = prompt_as_text(current, model)
        text, blocks = split_reply(reply.text)
        if not blocks or attempt.stopped:
            attempt.text = reply.text
            return attempt
        outputs = []
        for code in blocks[: max_steps - len(attempt.steps)]:
            started = time.monotonic()
            calls = library_calls(code)
            if calls is not None:
                kind = "experience"
                seen = []
                for call in calls:
                    searches += 1
                    if searches > bounds.max_searches:
                        seen.append(f"The limit of {bounds.max_searches} experience searches is reached.")
                        break
                    observation, ids = await ask_library(tools.experience, call)
                    seen.append(observation)
                    attempt.retrieved += [i for i in ids if i not in attempt.retrieved]
                observation = "\n".join(seen)
            elif tools.python:
                kind = "python"
                execution = await run_python(code, limits=tools.limits, session=session)
                observation = shorten(execution.observation(), bounds.observation_chars)
            else:
                kind = "python"
                observation = "Only search_experience(...) and experience_details(...) can run here."
            seconds = time.monotonic() - started
            attempt.steps.append(
                ToolStepRecord(kind=kind, input=code, observation=observation, seconds=seconds, turn=turn)
            )
            outputs.append(observation)
        if len(attempt.steps) >= max_steps:
            attempt.stopped = "steps"
        elif spent >= max_tokens_total:
            attempt.stopped = "tokens"
        messages += [
            Message("assistant", text),
            Message(
                "user", _observation_message(outputs, final=attempt.stopped is not None, answer_format=answer_format)
            ),
        ]
    raise AssertionError("unreachable: the step bound ends the loop")


def _observation_message(outputs: list[str], *, final: bool, answer_format: str = "") -> str:
    if len(outputs) == 1:
        shown = f"Output:\n{outputs[0]}"
    else:
        shown = "\n\n".join(f"Output of block {i}:\n{o}" for i, o in enumerate(outputs, 1))
    next_step = fill("tool_actor_final" if final else "tool_actor_continue").strip()
    if answer_format.strip():
        next_step = f"{next_step} {answer_format.strip()}"
    return fill("tool_actor_observation", outputs=shown, next=next_step).strip()


def _tokens(usage: Usage, prompt: Prompt, text: str) -> int:
    """What one call cost against the token bound: its usage, or 4 characters a token when the backend reports
    none, so that the bound holds on every backend."""
    if usage.prompt_tokens or usage.completion_tokens:
        return usage.prompt_tokens + usage.completion_tokens
    return (sum(len(m.content) for m in prompt.messages) + len(text)) // 4
