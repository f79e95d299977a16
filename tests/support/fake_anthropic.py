"""A scripted Anthropic Messages API server for tests: a real socket on 127.0.0.1, no mocking of httpx.

    with FakeAnthropic(lambda req: "hello") as server:
        model = AnthropicModel("m", api_key="k", base_url=server.base_url)
        ...
        assert server.requests[0].json["system"] == "..."

Replies come from the queue filled by `enqueue` first, then from the handler. A handler (or queue entry) may
give a `str` (a normal assistant message with that text), a `dict` (a JSON body sent with status 200, e.g.
from `tool_use_body`) or a `FakeResponse` (full control: status, raw text, headers, delay).

Like the real API, the server checks what a client most easily gets wrong and answers 400 (or 401) for it:
a missing ``anthropic-version`` header or ``max_tokens``, messages that do not alternate user/assistant
starting with user, and, when `api_key` is set, a wrong ``x-api-key``. Checks do not consume the queue.

The server machinery and the request/response records are `scripted_server`'s, shared with `fake_openai`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.support.scripted_server import (
    FakeRequest,
    FakeResponse,
    Handler,
    JsonRequestHandler,
    ScriptedServer,
    rough_tokens,
)

MESSAGES_PATH = "/v1/messages"

__all__ = [
    "MESSAGES_PATH",
    "FakeAnthropic",
    "FakeRequest",
    "FakeResponse",
    "error_body",
    "message_body",
    "tool_use_body",
]


def _message(content: list[dict[str, Any]], input_tokens: int, output_tokens: int, stop: str) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "fake-claude",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def message_body(text: str, input_tokens: int = 0, output_tokens: int | None = None) -> dict[str, Any]:
    """A ``message`` response body with one text block."""
    output_tokens = rough_tokens(text) if output_tokens is None else output_tokens
    return _message([{"type": "text", "text": text}], input_tokens, output_tokens, "end_turn")


def tool_use_body(
    tool_input: dict[str, Any], name: str = "reply", input_tokens: int = 0, output_tokens: int = 0
) -> dict[str, Any]:
    """A ``message`` response body whose content is one ``tool_use`` block calling `name` with `tool_input`."""
    block = {"type": "tool_use", "id": "toolu_fake", "name": name, "input": tool_input}
    return _message([block], input_tokens, output_tokens, "tool_use")


def error_body(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    """An Anthropic-style error body."""
    return {"type": "error", "error": {"type": type_, "message": message}}


def _request_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    parts = [system] if isinstance(system, str) and system else []
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            parts.append(message["content"])
    return "\n".join(parts)


def _protocol_problem(body: dict[str, Any]) -> str | None:
    """What the real API would reject about `body`, or None."""
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        expected = "user" if i % 2 == 0 else "assistant"
        role = message.get("role") if isinstance(message, dict) else None
        if role != expected:
            return f"messages.{i}.role: roles must alternate between user and assistant, starting with user"
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"messages.{i}: text content blocks must be non-empty"
    return None


class _RequestHandler(JsonRequestHandler):
    server: Any  # its `fake` is a FakeAnthropic

    def do_POST(self) -> None:
        fake: FakeAnthropic = self.server.fake
        request = self.read_request("POST")
        if request.path != MESSAGES_PATH:
            self.send_json(404, error_body(f"no route POST {request.path}", "not_found_error"))
            return
        response = fake._check(request)
        if response is None:
            response = fake.scripted_reply(request, lambda message: error_body(message, "api_error"))
            if fake.wait_stopping(response.delay):
                return
        if response.json is None and response.text is None and response.reply is not None:
            # A copy, not in place: a handler may hand out the same FakeResponse for many requests.
            reply_json = message_body(response.reply, rough_tokens(_request_text(request.json or {})))
            response = replace(response, json=reply_json)
        self.send_scripted(response)


class FakeAnthropic(ScriptedServer):
    """An Anthropic Messages API server on 127.0.0.1 in a daemon thread. Use as a context manager.

    `api_key`, when set, is the only ``x-api-key`` accepted (others get the API's 401).
    """

    request_handler = _RequestHandler
    thread_name = "fake-anthropic"

    def __init__(self, handler: Handler | None = None, *, api_key: str | None = None) -> None:
        super().__init__(handler)
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the API root, as `AnthropicModel` takes it (without ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    # -- called from handler threads -------------------------------------------------------------------------

    def _check(self, request: FakeRequest) -> FakeResponse | None:
        """The error the real API would answer before looking at the model, or None."""
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return FakeResponse(401, json=error_body("invalid x-api-key", "authentication_error"))
        if "anthropic-version" not in request.headers:
            return FakeResponse(400, json=error_body("anthropic-version: header is required"))
        if not isinstance(request.json, dict):
            return FakeResponse(400, json=error_body("request body is not a JSON object"))
        problem = _protocol_problem(request.json)
        return FakeResponse(400, json=error_body(problem)) if problem else None
