"""`FunctionModel`: an in-process `ChatModel` whose replies come from a Python function (a test double)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flexlearn.models.base import GenerationOptions, Prompt, PromptKind, Reply, Usage

# (prompt, role, schema) -> reply text or a full Reply, sync or async.
ReplyFunction = Callable[[Prompt, str, dict[str, Any] | None], str | Reply | Awaitable[str | Reply]]


@dataclass
class FunctionCall:
    """One call a `FunctionModel` received."""

    prompt: Prompt
    role: str
    schema: dict[str, Any] | None
    options: GenerationOptions | None


def _estimate_tokens(text: str) -> int:
    # About four characters a token for English text; good enough for metering tests.
    return (len(text) + 3) // 4


class FunctionModel:
    """A model that answers with ``fn(prompt, role, schema)``, sync or async; cf. pydantic-ai's FunctionModel.

    `fn` returns the reply text (or a full `Reply`); exceptions it raises propagate, so a test can raise
    `TransientModelError` to exercise retries. Usage is estimated as characters / 4 of the prompt rendering
    for `prompt_kind` and of the reply. Every call is kept in `calls` for assertions.
    """

    def __init__(
        self,
        fn: ReplyFunction,
        *,
        name: str = "function",
        prompt_kind: PromptKind = PromptKind.CHAT,
    ) -> None:
        self.fn = fn
        self.name = name
        self.prompt_kind = PromptKind(prompt_kind)
        self.calls: list[FunctionCall] = []
        self.closed = False

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply:
        """Call `fn` and wrap its text in a `Reply`."""
        self.calls.append(FunctionCall(prompt, role, schema, options))
        started = time.perf_counter()
        result = self.fn(prompt, role, schema)
        if inspect.isawaitable(result):
            result = await result
        latency = time.perf_counter() - started
        if isinstance(result, Reply):
            return result
        if not isinstance(result, str):
            raise TypeError(f"FunctionModel function must return str or Reply, got {type(result).__name__}")
        if self.prompt_kind is PromptKind.CHAT:
            prompt_text = "\n".join(m.content for m in prompt.messages)
        else:
            prompt_text = prompt.completion_text()
        return Reply(
            text=result,
            usage=Usage(_estimate_tokens(prompt_text), _estimate_tokens(result)),
            latency_s=latency,
            # The function is handed the schema itself, as a json_schema backend would be.
            structured_mode="json_schema" if schema is not None else "none",
        )

    async def aclose(self) -> None:
        """Nothing to release; marks the model closed so tests can check it was."""
        self.closed = True
