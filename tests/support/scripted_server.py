"""What the fake model servers share: a real HTTP server on 127.0.0.1 in a daemon thread, the record of every
request, and scripted replies (a queue filled by `enqueue`, then a handler).

A fake API subclasses `ScriptedServer` with its routes and reply shapes, and `JsonRequestHandler` for its request
handler. Replies from the queue or handler may be a `str` (a normal reply with that text, in the API's shape), a
`dict` (a JSON body with status 200) or a `FakeResponse` (full control: status, raw text, headers, delay).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


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
Scripted = FakeResponse | str | dict[str, Any]


def rough_tokens(text: str) -> int:
    """The fake's token count: whitespace-separated words (deterministic, easy to assert on)."""
    return len(text.split())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Handler threads may be sleeping in a slow reply; never wait for them on close.
    block_on_close = False
    fake: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is a normal event in these tests, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class JsonRequestHandler(BaseHTTPRequestHandler):
    """Reads JSON requests and writes replies; subclasses route them."""

    protocol_version = "HTTP/1.1"  # keep-alive, like real servers; httpx reuses connections
    timeout = 10  # idle keep-alive connections release their thread after this
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed ACK (~40 ms a call).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def read_request(self, method: str) -> FakeRequest:
        """Parse and record the request (a body that is not JSON is recorded as None)."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = FakeRequest(method, self.path.split("?", 1)[0], body, headers)
        self.server.fake._record(request)
        return request

    def send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})

    def send_scripted(self, response: FakeResponse) -> None:
        """A `FakeResponse` whose `reply` the subclass has already turned into `json`."""
        headers = dict(response.headers)
        if response.json is not None:
            payload = json.dumps(response.json).encode()
            headers.setdefault("Content-Type", "application/json")
        else:
            payload = (response.text or "").encode()
            if response.text is not None:
                headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        self.send(response.status, payload, headers)


class ScriptedServer:
    """A fake API on 127.0.0.1 in a daemon thread; use as a context manager. Subclasses set `request_handler`
    and `thread_name`, and build replies with `scripted_reply`."""

    request_handler: ClassVar[type[JsonRequestHandler]]
    thread_name: ClassVar[str] = "fake-api"

    def __init__(self, handler: Handler | None = None, *, port: int = 0) -> None:
        self.handler: Handler = handler if handler is not None else (lambda request: "ok")
        self.requests: list[FakeRequest] = []
        self._port = port
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and start serving (idempotent)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._port), self.request_handler)
        server.fake = self
        self._server = server
        # A short poll interval keeps stop() fast; the default (0.5 s) would add up over many tests.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=self.thread_name, daemon=True
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    # -- scripting -------------------------------------------------------------------------------------------

    def enqueue(self, *responses: Scripted) -> None:
        """Replies to give, in order, before falling back to the handler."""
        with self._lock:
            self._queue.extend(responses)

    def wait_stopping(self, delay: float) -> bool:
        """Sleep `delay` seconds for a slow reply; True when the server is shutting down meanwhile (the reply
        should then be dropped rather than hold the server open)."""
        return delay > 0 and self._stopping.wait(delay)

    # -- called from handler threads -------------------------------------------------------------------------

    def _record(self, request: FakeRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def scripted_reply(self, request: FakeRequest, handler_error: Callable[[str], Any]) -> FakeResponse:
        """The next reply: from the queue, else the handler. A handler that raises gives a 500 whose body
        `handler_error(message)` builds in the API's error shape."""
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None:
            try:
                scripted = self.handler(request)
            except Exception as exc:  # a broken test handler shows up as a 500 with its message
                return FakeResponse(500, json=handler_error(f"handler raised {exc!r}"))
        if isinstance(scripted, FakeResponse):
            return scripted
        if isinstance(scripted, str):
            return FakeResponse(reply=scripted)
        return FakeResponse(json=scripted)
