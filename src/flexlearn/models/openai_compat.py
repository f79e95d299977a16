"""A `ChatModel` for any server that speaks the OpenAI HTTP API (OpenAI, vLLM, llama.cpp server, Ollama, ...).

Written on httpx rather than the openai SDK: we need exact control over status codes, `Retry-After` and the
structured-output fallback, and the SDK's own retry loop would fight with `RetryingModel`.

Errors are classified, not retried, here: transient failures (429, 5xx, timeouts, dropped connections, a 200
with a body we cannot read) raise `TransientModelError` for the retry middleware; everything else raises
`ModelError` with the server's own message.

Structured output: servers differ in what they accept, so with a schema we try, in order,
``json_schema`` (OpenAI, vLLM), ``json_object`` carrying the schema (llama.cpp server), and ``prompt`` (the
schema is written into the prompt). A 400/422/501 while a ``response_format`` was sent moves on to the next
mode, and so does a 5xx whose message names the response_format (llama-cpp-python's server answers 500). The
mode that worked is cached per endpoint for the whole process, so a server's rejection is paid once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from flexlearn.errors import ModelError, TransientModelError
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
from flexlearn.models.http import ClientPool, Response, error_message, parse_retry_after, post, redact, usage_count

STRUCTURED_MODES: tuple[str, ...] = ("json_schema", "json_object", "prompt")
COMPLETION_DEFAULT_MAX_TOKENS = 512

# Statuses that mean "this server does not take that response_format" when one was sent. 401/403/404/429 are
# deliberately absent: they say nothing about the response_format and must surface as themselves.
_REJECTION_STATUSES = frozenset({400, 422, 501})


def _blames_response_format(message: str) -> bool:
    """Some servers report a response_format they do not take as a server error: llama-cpp-python's answers
    HTTP 500 "Input should be 'text' or 'json_object'" for json_schema. Retrying that would never help."""
    lowered = message.lower()
    return "response_format" in lowered or "json_schema" in lowered


# Endpoint key -> the structured mode that last worked there. Module-level so every instance (the actor's, the
# critic's, ... all built from the same URI) shares what one of them learned.
_structured_mode_cache: dict[str, str] = {}
_cache_lock = threading.Lock()


def structured_mode_cache_clear() -> None:
    """Forget which structured-output mode each endpoint accepts (for tests)."""
    with _cache_lock:
        _structured_mode_cache.clear()


def structured_mode_cached(base_url: str, model: str, prompt_kind: PromptKind) -> str | None:
    """The structured mode known to work for this endpoint, or None if none is known yet."""
    with _cache_lock:
        return _structured_mode_cache.get(_cache_key(base_url, model, prompt_kind))


def _cache_key(base_url: str, model: str, prompt_kind: PromptKind) -> str:
    # The prompt kind is part of the key because /chat/completions and /completions of one server can accept
    # different response_formats (llama.cpp server, OpenAI).
    return f"{base_url.rstrip('/')}|{model}|{prompt_kind.value}"


def schema_instruction(schema: dict[str, Any]) -> str:
    """The instruction used in ``prompt`` mode: ask for a bare JSON object and show the schema."""
    schema_text = json.dumps(schema, indent=1, ensure_ascii=False)
    return f"Reply with only a JSON object that matches this JSON schema and no text before or after it:\n{schema_text}"


class _Rejected(Exception):
    """The server refused the response_format we sent: try the next structured mode."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class OpenAICompatModel:
    """A model behind an OpenAI-compatible HTTP API.

    `prompt_kind` picks the endpoint: CHAT posts the messages to ``/chat/completions``, COMPLETION posts
    `prompt.completion_text()` (with `prompt.stop`) to ``/completions`` for base models.
    With no `api_key` no Authorization header is sent (local servers need none).
    Pass `http` to share a client; it is then not closed by `aclose`, and its own timeouts apply.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None,
        prompt_kind: PromptKind = PromptKind.CHAT,
        timeout: float = 120.0,
        default_max_tokens: int | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.prompt_kind = PromptKind(prompt_kind)
        # The name is printed and stored (runs, provenance, results): never with the URL's credentials.
        self.name = f"openai:{model}@{redact(self.base_url)}"
        self.timeout = timeout
        self.default_max_tokens = default_max_tokens
        check_max_tokens_env()
        self._api_key = api_key
        self._owns_http = http is None
        self._http: httpx.AsyncClient | ClientPool = http if http is not None else ClientPool(timeout=timeout)

    def __repr__(self) -> str:
        return f"OpenAICompatModel({self.name!r}, prompt_kind={self.prompt_kind.value!r})"

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply:
        """One completion. Raises `TransientModelError` for failures worth retrying, else `ModelError`."""
        started = time.perf_counter()
        if schema is None:
            text, usage = await self._post(self._body(prompt, options, None, None, role))
            return Reply(text=text, usage=usage, latency_s=time.perf_counter() - started)

        key = _cache_key(self.base_url, self.model, self.prompt_kind)
        with _cache_lock:
            known = _structured_mode_cache.get(key)
        modes = STRUCTURED_MODES[STRUCTURED_MODES.index(known) :] if known else STRUCTURED_MODES
        rejections: list[str] = []
        for mode in modes:
            try:
                text, usage = await self._post(self._body(prompt, options, schema, mode, role))
            except _Rejected as exc:
                rejections.append(f"{mode}: {exc}")
                continue
            # Cache only on success: a 400 for some other reason (an over-long prompt) must not downgrade the
            # endpoint for the rest of the run.
            if known != mode:
                with _cache_lock:
                    _structured_mode_cache[key] = mode
            latency = time.perf_counter() - started
            return Reply(text=text, usage=usage, latency_s=latency, structured_mode=mode)
        # Unreachable in practice: "prompt" mode sends no response_format, so it is never a _Rejected.
        raise ModelError(f"{self.name}: every structured-output mode was rejected: {'; '.join(rejections)}")

    def _body(
        self,
        prompt: Prompt,
        options: GenerationOptions | None,
        schema: dict[str, Any] | None,
        mode: str | None,
        role: str = "actor",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model}
        instruction = schema_instruction(schema) if schema is not None and mode == "prompt" else None
        if self.prompt_kind is PromptKind.CHAT:
            messages = _with_instruction(prompt.messages, instruction)
            body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        else:
            text = prompt.completion_text()
            if instruction is not None:
                # Put first, not last: a base-model prompt ends with the cue the model continues from
                # ("Answer:"), and text after it would break the pattern.
                text = f"{instruction}\n\n{text}"
            body["prompt"] = text
            if prompt.stop:
                body["stop"] = list(prompt.stop)
        max_tokens = options.max_tokens if options and options.max_tokens is not None else None
        if max_tokens is None:
            max_tokens = self.default_max_tokens
        if max_tokens is None and self.prompt_kind is PromptKind.COMPLETION:
            # /v1/completions stops after 16 tokens unless told otherwise (OpenAI, llama.cpp servers): enough to
            # cut every JSON reply in half.
            max_tokens = COMPLETION_DEFAULT_MAX_TOKENS
        if max_tokens is None:
            max_tokens = default_max_tokens(role)
        body["max_tokens"] = max_tokens
        if options is not None and options.temperature is not None:
            body["temperature"] = options.temperature
        if options is not None and options.seed is not None:
            body["seed"] = options.seed
        if schema is not None and mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": False},
            }
        elif schema is not None and mode == "json_object":
            # llama.cpp server reads the schema from here and turns it into a grammar; OpenAI-style servers
            # that ignore the extra key still give JSON.
            body["response_format"] = {"type": "json_object", "schema": schema}
        return body

    async def _post(self, body: dict[str, Any]) -> tuple[str, Usage]:
        chat = self.prompt_kind is PromptKind.CHAT
        url = f"{self.base_url}/chat/completions" if chat else f"{self.base_url}/completions"
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        response = await post(self._http, self.name, url, json=body, headers=headers)

        status = response.status_code
        if not 200 <= status < 300:
            message = error_message(response)
            if status == 429 or status == 408 or status >= 500:
                if "response_format" in body and (status == 501 or _blames_response_format(message)):
                    raise _Rejected(message)
                raise TransientModelError(
                    f"{self.name}: HTTP {status}: {message}", retry_after=parse_retry_after(response.headers)
                )
            if "response_format" in body and status in _REJECTION_STATUSES:
                raise _Rejected(message)
            if status == 401:
                raise ModelError(
                    f"{self.name}: HTTP 401 unauthorized: {message}. "
                    "Set FLEX_API_KEY (or OPENAI_API_KEY) to a valid key for this server."
                )
            if status == 404:
                raise ModelError(
                    f"{self.name}: HTTP 404: {message}. Check the base URL (it usually ends in /v1) "
                    f"and the model name {self.model!r}."
                )
            raise ModelError(f"{self.name}: HTTP {status}: {message}")
        return self._parse(response, chat)

    def _parse(self, response: httpx.Response | Response, chat: bool) -> tuple[str, Usage]:
        # A 200 we cannot read is treated as a flaky server (a proxy's HTML page, a truncated body), not as a
        # bug of ours: it is retried.
        try:
            data = response.json()
        except ValueError as exc:
            raise TransientModelError(
                f"{self.name}: HTTP 200 with a body that is not JSON: {response.text[:200]!r}"
            ) from exc
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise TransientModelError(
                f"{self.name}: HTTP 200 with an unexpected body: {json.dumps(data)[:200]}"
            ) from exc
        if not isinstance(text, str):
            raise TransientModelError(f"{self.name}: HTTP 200 with no text in the reply: {json.dumps(data)[:200]}")
        usage = data.get("usage") if isinstance(data, dict) else None
        return text, Usage(usage_count(usage, "prompt_tokens"), usage_count(usage, "completion_tokens"))

    async def aclose(self) -> None:
        """Close the HTTP client if this model created it."""
        if self._owns_http:
            await self._http.aclose()


def _with_instruction(messages: list[Message], instruction: str | None) -> list[Message]:
    """A copy of `messages`, `instruction` appended to the last user message."""
    if instruction is None:
        return list(messages)
    out = list(messages)
    for i in range(len(out) - 1, -1, -1):
        if out[i].role == "user":
            out[i] = Message(role="user", content=f"{out[i].content}\n\n{instruction}")
            return out
    out.append(Message(role="user", content=instruction))
    return out
