"""The model seam. Everything above it speaks only these types.

A `Prompt` carries two renderings of the same request: chat messages for instruction-tuned models, and a plain
completion text for base models, which follow worked examples rather than instructions. The model picks the one
that matches its `prompt_kind`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from flexlearn.errors import ConfigError


class PromptKind(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"


@dataclass
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass
class Prompt:
    """One request to a model, in both renderings.

    `completion` is the text a base model continues; when empty it is derived from the messages.
    `stop` applies to completion-style generation (a base model otherwise writes the next worked example too).
    """

    messages: list[Message]
    completion: str = ""
    stop: list[str] = field(default_factory=list)

    def completion_text(self) -> str:
        if self.completion:
            return self.completion
        parts = [m.content for m in self.messages if m.role != "assistant"]
        return "\n\n".join(parts) + "\n\n"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass
class Reply:
    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    # How the JSON schema was enforced: json_schema | json_object | prompt | grammar | tool | none.
    structured_mode: str = "none"


# The longest reply a remote server is asked for, per role, when the caller sets none: without a cap a base model
# behind a chat endpoint writes thousands of tokens per answer (minutes each), and a hosted model bills them.
# The actor gets room for a long worked solution; the others reply in bounded JSON (the distiller's holds several
# lessons). FLEX_MAX_TOKENS_<ROLE> (e.g. FLEX_MAX_TOKENS_ACTOR=8192) overrides one; `--max-tokens` the actor's.
DEFAULT_MAX_TOKENS: dict[str, int] = {"actor": 4096, "critic": 1024, "judge": 1024, "distiller": 2048, "updater": 1024}
_OTHER_ROLE_MAX_TOKENS = 2048


def default_max_tokens(role: str) -> int:
    """The reply cap for `role` against a remote server: FLEX_MAX_TOKENS_<ROLE> when set, else
    `DEFAULT_MAX_TOKENS` (2048 for a role not listed there)."""
    name = f"FLEX_MAX_TOKENS_{role.upper()}"
    value = os.environ.get(name, "").strip()
    if value:
        if not value.isdigit() or int(value) <= 0:
            raise ConfigError(f"{name} must be a positive whole number of tokens, got {value!r}")
        return int(value)
    return DEFAULT_MAX_TOKENS.get(role, _OTHER_ROLE_MAX_TOKENS)


def check_max_tokens_env() -> None:
    """Every FLEX_MAX_TOKENS_<ROLE> set, checked when a remote model is built rather than at its first call of
    that role, so a bad one refuses a command before it writes anything."""
    for name in sorted(os.environ):
        if name.startswith("FLEX_MAX_TOKENS_"):
            default_max_tokens(name.removeprefix("FLEX_MAX_TOKENS_"))


@dataclass
class GenerationOptions:
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None


@runtime_checkable
class ChatModel(Protocol):
    """An LLM. `schema`, when given, is a JSON schema the reply must follow; the implementation enforces it the
    best way its backend allows (response_format, grammar, or instructions in the prompt) and reports which in
    `Reply.structured_mode`. Validation of the reply is not its job (see `models.structured`).

    `role` names the agent making the call (actor, critic, distiller, updater) for metering and per-role limits.
    """

    name: str
    prompt_kind: PromptKind

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply: ...

    async def aclose(self) -> None: ...
