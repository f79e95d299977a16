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

It has its own small HTTP server rather than `fake_openai`'s: that one's request handler routes only the
OpenAI paths. The request/response records (`FakeRequest`, `FakeResponse`) are shared.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.fake_openai import FakeRequest, FakeResponse, rough_tokens

MESSAGES_PATH = "/v1/messages"

Handler = Callable[[FakeRequest], FakeResponse | str | dict[str, Any]]

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # handler threads may sleep in a slow reply; never wait for them on close
    fake: FakeAnthropic

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is a normal event in these tests, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; httpx reuses connections
    timeout = 10
    disable_nagle_algorithm = True  # else each reply's second write waits ~40 ms for a delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = FakeRequest("POST", path, body, headers)
        fake._record(request)
        if path != MESSAGES_PATH:
            self._send(FakeResponse(404, json=error_body(f"no route POST {path}", "not_found_error")))
            return
        response = fake._check(request)
        if response is None:
            response = fake._respond(request)
            if response.delay > 0 and fake._stopping.wait(response.delay):
                return  # shutting down: drop the reply rather than hold the server open
        if response.json is None and response.text is None and response.reply is not None:
            # A copy, not in place: a handler may hand out the same FakeResponse for many requests.
            reply_json = message_body(response.reply, rough_tokens(_request_text(body or {})))
            response = replace(response, json=reply_json)
        self._send(response)

    def _send(self, response: FakeResponse) -> None:
        headers = dict(response.headers)
        if response.json is not None:
            payload = json.dumps(response.json).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            payload = (response.text or "").encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        self.send_response(response.status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FakeAnthropic:
    """An Anthropic Messages API server on 127.0.0.1 in a daemon thread. Use as a context manager.

    `api_key`, when set, is the only ``x-api-key`` accepted (others get the API's 401).
    """

    def __init__(self, handler: Handler | None = None, *, api_key: str | None = None) -> None:
        self.handler: Handler = handler if handler is not None else (lambda request: "ok")
        self.api_key = api_key
        self.requests: list[FakeRequest] = []
        self._queue: deque[FakeResponse | str | dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeAnthropic:
        """Bind and start serving (idempotent)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _RequestHandler)
        server.fake = self
        self._server = server
        # A short poll interval keeps stop() fast; the default (0.5 s) would add up over many tests.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; slow replies in progress are abandoned."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the API root, as `AnthropicModel` takes it (without ``/v1``)."""
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def enqueue(self, *responses: FakeResponse | str | dict[str, Any]) -> None:
        """Replies to give, in order, before falling back to the handler."""
        with self._lock:
            self._queue.extend(responses)

    # -- called from handler threads -------------------------------------------------------------------------

    def _record(self, request: FakeRequest) -> None:
        with self._lock:
            self.requests.append(request)

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

    def _respond(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None:
            try:
                scripted = self.handler(request)
            except Exception as exc:  # a broken test handler shows up as a 500 with its message
                return FakeResponse(500, json=error_body(f"handler raised {exc!r}", "api_error"))
        if isinstance(scripted, FakeResponse):
            return scripted
        if isinstance(scripted, str):
            return FakeResponse(reply=scripted)
        return FakeResponse(json=scripted)
