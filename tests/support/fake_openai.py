"""A scripted OpenAI-compatible HTTP server for tests: a real socket on 127.0.0.1, no mocking of httpx.

    with FakeOpenAI(lambda req: "hello") as server:
        model = OpenAICompatModel("m", server.base_url, api_key=None)
        ...
        assert server.requests[0].path == "/v1/chat/completions"

Replies come from the queue filled by `enqueue` first, then from the handler. A handler (or queue entry) may
give a `str` (a normal assistant reply with that content, in the shape the endpoint uses), a `dict` (a JSON
body sent with status 200) or a `FakeResponse` (full control: status, raw text, headers, delay).

Standalone, for subprocess tests, from the repository root: ``python -m tests.support.fake_openai --port 8000
--reply ok`` serves until killed and prints the base URL on its first line.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
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

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"

__all__ = [
    "CHAT_PATH",
    "COMPLETIONS_PATH",
    "MODELS_PATH",
    "FakeOpenAI",
    "FakeRequest",
    "FakeResponse",
    "Handler",
    "chat_body",
    "completion_body",
    "error_body",
    "rough_tokens",
]


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


class _RequestHandler(JsonRequestHandler):
    server: Any  # its `fake` is a FakeOpenAI

    def do_GET(self) -> None:
        fake: FakeOpenAI = self.server.fake
        request = self.read_request("GET")
        if request.path == MODELS_PATH:
            self.send_json(
                200, {"object": "list", "data": [{"id": fake.model_id, "object": "model", "owned_by": "fake"}]}
            )
        else:
            self.send_json(404, error_body(f"no route GET {request.path}", "not_found_error"))

    def do_POST(self) -> None:
        fake: FakeOpenAI = self.server.fake
        request = self.read_request("POST")
        if request.path not in (CHAT_PATH, COMPLETIONS_PATH):
            self.send_json(404, error_body(f"no route POST {request.path}", "not_found_error"))
            return
        if not isinstance(request.json, dict):
            self.send_json(400, error_body("request body is not a JSON object"))
            return
        fake._enter()
        try:
            response = fake._respond(request)
            if fake.wait_stopping(response.delay):
                return
            if response.json is None and response.text is None and response.reply is not None:
                # A copy, not in place: a handler may hand out the same FakeResponse for many requests.
                response = replace(response, json=fake.reply_body(request, response.reply))
            self.send_scripted(response)
        finally:
            fake._leave()


class FakeOpenAI(ScriptedServer):
    """An OpenAI-compatible server on 127.0.0.1 in a daemon thread. Use as a context manager.

    `reject_json_schema` answers 400 to ``response_format.type == "json_schema"`` (as llama.cpp server does);
    `reject_response_format` answers 400 to any ``response_format``. Rejections do not consume the queue.
    `max_in_flight` is the most chat/completion requests handled at once (for concurrency tests).
    """

    request_handler = _RequestHandler
    thread_name = "fake-openai"

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        reject_json_schema: bool = False,
        reject_response_format: bool = False,
        model_id: str = "fake-model",
        port: int = 0,
    ) -> None:
        super().__init__(handler, port=port)
        self.reject_json_schema = reject_json_schema
        self.reject_response_format = reject_response_format
        self.model_id = model_id
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def requests_to(self, path: str) -> list[FakeRequest]:
        """The recorded requests to one path (e.g. ``/v1/chat/completions``)."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reply_body(self, request: FakeRequest, text: str) -> dict[str, Any]:
        """A normal reply body for `request`'s endpoint with `text`, usage counted with `rough_tokens`."""
        build = completion_body if request.path == COMPLETIONS_PATH else chat_body
        return build(text, rough_tokens(request.text), rough_tokens(text), model=self.model_id)

    # -- called from handler threads -------------------------------------------------------------------------

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
        return self.scripted_reply(request, lambda message: error_body(message, "server_error"))


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
