"""A scripted OpenAI-compatible HTTP server for tests: a real socket on 127.0.0.1, no mocking of httpx.

    with FakeOpenAI(lambda req: "hello") as server:
        model = OpenAICompatModel("m", server.base_url, api_key=None)
        ...
        assert server.requests[0].path == "/v1/chat/completions"

Replies come from the queue filled by `enqueue` first, then from the handler. A handler (or queue entry) may
give a `str` (a normal assistant reply with that content, in the shape the endpoint uses), a `dict` (a JSON
body sent with status 200) or a `FakeResponse` (full control: status, raw text, headers, delay).

Standalone, for subprocess tests: ``python tests/support/fake_openai.py --port 8000 --reply ok`` serves until
killed and prints the base URL on its first line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"


@dataclass
class FakeRequest:
    """One request the server received. `headers` keys are lower-case; `json` is None for a body-less GET."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]

    @property
    def response_format(self) -> dict[str, Any] | None:
        """The request's ``response_format``, if any."""
        body = self.json if isinstance(self.json, dict) else {}
        value = body.get("response_format")
        return value if isinstance(value, dict) else None

    @property
    def text(self) -> str:
        """All the prompt text of the request: the messages' contents, or the completion prompt."""
        body = self.json if isinstance(self.json, dict) else {}
        if isinstance(body.get("messages"), list):
            return "\n".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
        prompt = body.get("prompt", "")
        return prompt if isinstance(prompt, str) else json.dumps(prompt)


@dataclass
class FakeResponse:
    """A scripted reply. `json` is sent as the body, else `text` verbatim, else `reply` as a normal assistant
    reply (built for the endpoint that was called), else an empty body. `delay` seconds pass first."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reply: str | None = None


Handler = Callable[[FakeRequest], FakeResponse | str | dict[str, Any]]


def rough_tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words (deterministic, easy to assert on)."""
    return len(text.split())


def chat_body(
    text: str, prompt_tokens: int = 0, completion_tokens: int | None = None, model: str = "fake-model"
) -> dict[str, Any]:
    """A ``chat.completion`` response body carrying `text`."""
    completion_tokens = rough_tokens(text) if completion_tokens is None else completion_tokens
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def completion_body(
    text: str, prompt_tokens: int = 0, completion_tokens: int | None = None, model: str = "fake-model"
) -> dict[str, Any]:
    """A ``text_completion`` response body carrying `text`."""
    completion_tokens = rough_tokens(text) if completion_tokens is None else completion_tokens
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "code": None}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Handler threads may be sleeping in a slow reply; never wait for them on close.
    block_on_close = False
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is a normal event in these tests, not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers; httpx reuses connections
    timeout = 10  # idle keep-alive connections release their thread after this
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed ACK (~40 ms a call).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0]
        fake._record(FakeRequest("GET", path, None, self._headers()))
        if path == MODELS_PATH:
            body = {"object": "list", "data": [{"id": fake.model_id, "object": "model", "owned_by": "fake"}]}
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        else:
            self._send_json(404, error_body(f"no route GET {path}", "not_found_error"))

    def do_POST(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = FakeRequest("POST", path, body, self._headers())
        fake._record(request)
        if path not in (CHAT_PATH, COMPLETIONS_PATH):
            self._send_json(404, error_body(f"no route POST {path}", "not_found_error"))
            return
        if not isinstance(body, dict):
            self._send_json(400, error_body("request body is not a JSON object"))
            return
        fake._enter()
        try:
            response = fake._respond(request)
            if response.delay > 0 and fake._stopping.wait(response.delay):
                return  # shutting down: drop the reply rather than hold the server open
            self._send_response(request, response)
        finally:
            fake._leave()

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _send_response(self, request: FakeRequest, response: FakeResponse) -> None:
        headers = dict(response.headers)
        if response.json is not None:
            payload = json.dumps(response.json).encode()
            headers.setdefault("Content-Type", "application/json")
        elif response.text is not None:
            payload = response.text.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif response.reply is not None:
            payload = json.dumps(self.server.fake.reply_body(request, response.reply)).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            payload = b""
        self._send(response.status, payload, headers)

    def _send_json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 in a daemon thread. Use as a context manager.

    `reject_json_schema` answers 400 to ``response_format.type == "json_schema"`` (as llama.cpp server does);
    `reject_response_format` answers 400 to any ``response_format``. Rejections do not consume the queue.
    `max_in_flight` is the most chat/completion requests handled at once (for concurrency tests).
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        reject_json_schema: bool = False,
        reject_response_format: bool = False,
        model_id: str = "fake-model",
        port: int = 0,
    ) -> None:
        self.handler: Handler = handler if handler is not None else (lambda request: "ok")
        self.reject_json_schema = reject_json_schema
        self.reject_response_format = reject_response_format
        self.model_id = model_id
        self.requests: list[FakeRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._port = port
        self._queue: deque[FakeResponse | str | dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind and start serving (idempotent)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._port), _RequestHandler)
        server.fake = self
        self._server = server
        # A short poll interval keeps stop() fast; the default (0.5 s) would add up over many tests.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
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

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting -------------------------------------------------------------------------------------------

    def enqueue(self, *responses: FakeResponse | str | dict[str, Any]) -> None:
        """Replies to give, in order, before falling back to the handler."""
        with self._lock:
            self._queue.extend(responses)

    def requests_to(self, path: str) -> list[FakeRequest]:
        """The recorded requests to one path (e.g. ``/v1/chat/completions``)."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reply_body(self, request: FakeRequest, text: str) -> dict[str, Any]:
        """A normal reply body for `request`'s endpoint with `text`, usage counted with `rough_tokens`."""
        build = completion_body if request.path == COMPLETIONS_PATH else chat_body
        return build(text, rough_tokens(request.text), rough_tokens(text), model=self.model_id)

    # -- called from handler threads -------------------------------------------------------------------------

    def _record(self, request: FakeRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _respond(self, request: FakeRequest) -> FakeResponse:
        fmt = request.response_format
        if fmt is not None and self.reject_response_format:
            return FakeResponse(400, json=error_body("response_format is not supported by this server"))
        if fmt is not None and self.reject_json_schema and fmt.get("type") == "json_schema":
            return FakeResponse(
                400,
                json=error_body("'response_format.type' must be 'json_object' or 'text', got 'json_schema'"),
            )
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None:
            try:
                scripted = self.handler(request)
            except Exception as exc:  # a broken test handler shows up as a 500 with its message
                return FakeResponse(500, json=error_body(f"handler raised {exc!r}", "server_error"))
        if isinstance(scripted, FakeResponse):
            return scripted
        if isinstance(scripted, str):
            return FakeResponse(reply=scripted)
        return FakeResponse(json=scripted)


def main(argv: list[str] | None = None) -> None:
    """Serve a fixed reply until killed (for tests that run flexlearn in a subprocess)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="ok", help="the assistant reply to every request")
    args = parser.parse_args(argv)
    reply: str = args.reply
    with FakeOpenAI(lambda request: reply, port=args.port) as server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
