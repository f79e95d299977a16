"""A `ChatModel` for the Anthropic Messages API (``POST /v1/messages``), on httpx like its OpenAI sibling.

Written on httpx rather than the anthropic SDK for the same reasons as `openai_compat`: exact control over
status codes and ``Retry-After``, and no SDK retry loop fighting with `RetryingModel`.

Errors are classified, not retried, here: 429, 529 (overloaded), other 5xx, 408, timeouts, dropped connections
and a 200 with a body we cannot read raise `TransientModelError` (with the server's ``Retry-After``); everything
else raises `ModelError` with the API's own message.

The API differs from OpenAI's chat format in ways this module absorbs:

- system messages go in a top-level ``system`` field, not in ``messages``;
- ``messages`` must alternate user/assistant and start with a user turn, so consecutive same-role messages
  are merged and a leading assistant turn gets a user turn put before it;
- ``max_tokens`` is required, so `default_max_tokens` fills it when the caller gives none;
- there is no ``seed``: `GenerationOptions.seed` is ignored;
- there is no completion endpoint: only `PromptKind.CHAT` is served.

Structured output uses tool use: the schema becomes the input schema of a single tool, ``reply``, which the
request forces the model to call; the tool call's input is returned as JSON text (``structured_mode="tool"``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from flexlearn.errors import ConfigError, ModelError, TransientModelError
from flexlearn.models.base import (
    GenerationOptions,
    Message,
    Prompt,
    PromptKind,
    Reply,
    Usage,
    check_max_tokens_env,
    default_max_tokens,
)
from flexlearn.models.http import ClientPool, error_message, parse_retry_after, post, redact, usage_count

# Reused rather than copied: the Anthropic error body ({"type": "error", "error": {"message": ...}}) has the
# same `error.message` shape that helper already reads, and Retry-After parsing is identical.

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
REPLY_TOOL = "reply"
_REPLY_TOOL_DESCRIPTION = (
    "Give your final reply by calling this tool. Its input is your whole reply, as a JSON object that matches "
    "the input schema."
)
# The API rejects empty text content and a conversation that opens with an assistant turn; this stands in as
# the user turn where the prompt has none to offer.
_FILLER_USER_TURN = "Continue."
# 529 is Anthropic's "overloaded"; it is >= 500 and so covered below, but named here because it is the one most
# often seen and the reason this backend must never treat 5xx as permanent.
_TRANSIENT_4XX = frozenset({408, 429})


def anthropic_messages(messages: list[Message]) -> tuple[str, list[dict[str, str]]]:
    """Split `messages` into the API's ``system`` text and a ``messages`` list it accepts.

    System messages are joined with blank lines. The rest are fixed up for the API's rules: empty messages are
    dropped (the API refuses empty text), consecutive same-role turns are merged with a blank line between
    them, a leading assistant turn gets a user turn before it, and a prompt with no turns at all gets one user
    turn. Any role other than ``assistant`` or ``system`` is sent as ``user``.
    """
    system_parts: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            if message.content.strip():
                system_parts.append(message.content)
            continue
        if not message.content.strip():
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = f"{turns[-1]['content']}\n\n{message.content}"
        else:
            turns.append({"role": role, "content": message.content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": _FILLER_USER_TURN})
    return "\n\n".join(system_parts), turns


class AnthropicModel:
    """A model behind the Anthropic Messages API.

    `api_key` is sent as ``x-api-key``; None sends no key (for a gateway that adds its own). `base_url` is the
    API root without ``/v1`` (requests go to ``{base_url}/v1/messages``). `default_max_tokens` is used when
    the caller gives no ``max_tokens``, which the API requires. Pass `http` to share a client; it is then not
    closed by `aclose`, and its own timeouts apply.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        base_url: str = ANTHROPIC_BASE_URL,
        timeout: float = 120.0,
        default_max_tokens: int | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.name = f"anthropic:{model}"
        self.timeout = timeout
        self.default_max_tokens = default_max_tokens
        check_max_tokens_env()
        self._api_key = api_key
        self._owns_http = http is None
        self._http: httpx.AsyncClient | ClientPool = http if http is not None else ClientPool(timeout=timeout)

    def __repr__(self) -> str:
        return f"AnthropicModel({self.name!r}, base_url={redact(self.base_url)!r})"

    @property
    def prompt_kind(self) -> PromptKind:
        """Always `PromptKind.CHAT`: the Messages API has no completion endpoint for base models."""
        return PromptKind.CHAT

    @prompt_kind.setter
    def prompt_kind(self, kind: PromptKind) -> None:
        # A setter at all because callers (from_uri for the local backend, user code) set the kind; asking this
        # backend for completion-style prompts must fail loudly rather than be silently ignored.
        if PromptKind(kind) is not PromptKind.CHAT:
            raise ConfigError(f"{self.name}: the Anthropic API serves chat prompts only, not {kind!s}")

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply:
        """One message. Raises `TransientModelError` for failures worth retrying, else `ModelError`.

        With a `schema`, the reply is the forced ``reply`` tool call's input as JSON text, and
        ``structured_mode == "tool"``; should the API answer with text instead, that text is returned with
        ``structured_mode == "none"`` and validating it is left to the caller.
        """
        started = time.perf_counter()
        data = await self._post(self._body(prompt, options, schema, role))
        text, tool_input, usage = self._parse(data)
        if schema is not None and tool_input is not None:
            return Reply(
                text=json.dumps(tool_input, ensure_ascii=False),
                usage=usage,
                latency_s=time.perf_counter() - started,
                structured_mode="tool",
            )
        return Reply(text=text, usage=usage, latency_s=time.perf_counter() - started)

    def _body(
        self, prompt: Prompt, options: GenerationOptions | None, schema: dict[str, Any] | None, role: str = "actor"
    ) -> dict[str, Any]:
        system, messages = anthropic_messages(prompt.messages)
        max_tokens = options.max_tokens if options is not None and options.max_tokens is not None else None
        if max_tokens is None:
            max_tokens = self.default_max_tokens or default_max_tokens(role)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = system
        if options is not None and options.temperature is not None:
            body["temperature"] = options.temperature
        if schema is not None:
            body["tools"] = [{"name": REPLY_TOOL, "description": _REPLY_TOOL_DESCRIPTION, "input_schema": schema}]
            body["tool_choice"] = {"type": "tool", "name": REPLY_TOOL}
        return body

    async def _post(self, body: dict[str, Any]) -> Any:
        url = f"{self.base_url}/v1/messages"
        headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        response = await post(self._http, self.name, url, content=json.dumps(body).encode(), headers=headers)

        status = response.status_code
        if 200 <= status < 300:
            # A 200 we cannot read is treated as a flaky server (a proxy's HTML page, a truncated body): retried.
            try:
                return response.json()
            except ValueError as exc:
                raise TransientModelError(
                    f"{self.name}: HTTP {status} with a body that is not JSON: {response.text[:200]!r}"
                ) from exc
        message = error_message(response)
        if status in _TRANSIENT_4XX or status >= 500:
            raise TransientModelError(
                f"{self.name}: HTTP {status}: {message}", retry_after=parse_retry_after(response.headers)
            )
        if status == 401:
            raise ModelError(
                f"{self.name}: HTTP 401 unauthorized: {message}. "
                "Set ANTHROPIC_API_KEY (or FLEX_API_KEY) to a valid Anthropic API key."
            )
        if status == 404:
            raise ModelError(
                f"{self.name}: HTTP 404: {message}. Check the model name {self.model!r} and the base URL "
                f"{self.base_url!r} (without /v1: requests go to {url})."
            )
        raise ModelError(f"{self.name}: HTTP {status}: {message}")

    def _parse(self, data: Any) -> tuple[str, dict[str, Any] | None, Usage]:
        """The reply's text blocks joined, the ``reply`` tool call's input (if any), and the usage."""
        content = data.get("content") if isinstance(data, dict) else None
        if not isinstance(content, list):
            raise TransientModelError(f"{self.name}: HTTP 200 with an unexpected body: {json.dumps(data)[:200]}")
        texts: list[str] = []
        tool_input: dict[str, Any] | None = None
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif (
                block.get("type") == "tool_use"
                and block.get("name") == REPLY_TOOL
                and isinstance(block.get("input"), dict)
                and tool_input is None
            ):
                tool_input = block["input"]
        usage = data.get("usage")
        return (
            "".join(texts),
            tool_input,
            Usage(usage_count(usage, "input_tokens"), usage_count(usage, "output_tokens")),
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this model created it."""
        if self._owns_http:
            await self._http.aclose()
