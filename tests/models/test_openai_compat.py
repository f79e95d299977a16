"""OpenAICompatModel against a real local HTTP server (tests/support/fake_openai.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from flexlearn.errors import ConfigError, ModelError, TransientModelError
from flexlearn.models.base import GenerationOptions, Message, Prompt, PromptKind
from flexlearn.models.http import parse_retry_after
from flexlearn.models.openai_compat import (
    COMPLETION_DEFAULT_MAX_TOKENS,
    OpenAICompatModel,
    structured_mode_cache_clear,
    structured_mode_cached,
)
from tests.support.fake_openai import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    FakeOpenAI,
    FakeRequest,
    FakeResponse,
    chat_body,
    error_body,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}

ModelFactory = Callable[..., OpenAICompatModel]


@pytest.fixture
async def make_model() -> AsyncIterator[ModelFactory]:
    made: list[OpenAICompatModel] = []

    def make(base_url: str, **kwargs: Any) -> OpenAICompatModel:
        kwargs.setdefault("api_key", None)
        model = OpenAICompatModel(kwargs.pop("model", "test-model"), base_url, **kwargs)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


def chat_prompt(text: str = "What is 2 + 2?") -> Prompt:
    return Prompt(messages=[Message("system", "You are terse."), Message("user", text)])


async def test_chat_round_trip_reports_text_usage_and_latency(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.handler = lambda request: "four, obviously"
    model = make_model(server.base_url)

    reply = await model.generate(chat_prompt())

    assert reply.text == "four, obviously"
    # The fake counts words: "You are terse." + "What is 2 + 2?" = 3 + 5.
    assert reply.usage.prompt_tokens == 8
    assert reply.usage.completion_tokens == 2
    assert reply.latency_s > 0
    assert reply.structured_mode == "none"
    [request] = server.requests
    assert request.path == CHAT_PATH
    assert request.json["model"] == "test-model"
    assert request.json["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    assert "response_format" not in request.json
    assert "stop" not in request.json
    assert "authorization" not in request.headers  # no key: local servers need none
    assert model.name == f"openai:test-model@{server.base_url}"


async def test_api_key_is_sent_as_bearer(server: FakeOpenAI, make_model: ModelFactory) -> None:
    model = make_model(server.base_url, api_key="sk-test")
    await model.generate(chat_prompt())
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


async def test_usage_missing_from_body_counts_zero(server: FakeOpenAI, make_model: ModelFactory) -> None:
    body = chat_body("hi")
    del body["usage"]
    server.enqueue(body)
    reply = await make_model(server.base_url).generate(chat_prompt())
    assert reply.text == "hi"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (0, 0)


async def test_completion_kind_posts_completion_text_with_stop(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.handler = lambda request: " 4\n"
    model = make_model(server.base_url, prompt_kind=PromptKind.COMPLETION)
    prompt = Prompt(messages=[Message("user", "unused")], completion="Q: 2 + 2?\nA:", stop=["\nQ:"])

    reply = await model.generate(prompt)

    assert reply.text == " 4\n"
    assert reply.usage.prompt_tokens == 5  # the fake counts whitespace-separated words
    [request] = server.requests
    assert request.path == COMPLETIONS_PATH
    assert request.json["prompt"] == "Q: 2 + 2?\nA:"
    assert request.json["stop"] == ["\nQ:"]
    assert "messages" not in request.json


async def test_completion_kind_never_leaves_max_tokens_to_the_server_default(
    server: FakeOpenAI, make_model: ModelFactory
) -> None:
    # Servers default /v1/completions to 16 tokens; chat requests get the role's cap (see the next test).
    await make_model(server.base_url, prompt_kind=PromptKind.COMPLETION).generate(chat_prompt())
    assert server.requests[0].json["max_tokens"] == COMPLETION_DEFAULT_MAX_TOKENS


async def test_every_role_has_a_default_reply_cap_that_the_environment_overrides(
    server: FakeOpenAI, make_model: ModelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An uncapped base model behind a chat endpoint wrote 8,128-token replies, minutes each.
    model = make_model(server.base_url)
    for role in ("actor", "critic", "distiller", "updater", "judge"):
        await model.generate(chat_prompt(), role=role)
    assert [r.json["max_tokens"] for r in server.requests] == [4096, 1024, 2048, 1024, 1024]
    monkeypatch.setenv("FLEX_MAX_TOKENS_ACTOR", "8192")
    await model.generate(chat_prompt())
    await model.generate(chat_prompt(), options=GenerationOptions(max_tokens=9))
    assert [r.json["max_tokens"] for r in server.requests[-2:]] == [8192, 9]
    monkeypatch.setenv("FLEX_MAX_TOKENS_ACTOR", "lots")
    with pytest.raises(ConfigError, match="FLEX_MAX_TOKENS_ACTOR"):
        await model.generate(chat_prompt())


async def test_credentials_in_the_base_url_never_reach_the_name(make_model: ModelFactory) -> None:
    model = make_model("http://user:SECRETKEY@127.0.0.1:9/v1?api_key=SECRET2&x=1")
    assert "SECRET" not in model.name and "SECRET" not in repr(model)
    assert model.name == "openai:test-model@http://127.0.0.1:9/v1?api_key=***&x=1"


async def test_generation_options_and_default_max_tokens(server: FakeOpenAI, make_model: ModelFactory) -> None:
    model = make_model(server.base_url, default_max_tokens=77)
    await model.generate(chat_prompt())
    await model.generate(chat_prompt(), options=GenerationOptions(max_tokens=5, temperature=0.0, seed=3))
    first, second = (r.json for r in server.requests)
    assert first["max_tokens"] == 77
    assert "temperature" not in first and "seed" not in first
    assert (second["max_tokens"], second["temperature"], second["seed"]) == (5, 0.0, 3)


# -- structured output --------------------------------------------------------------------------------------


async def test_json_schema_mode_when_the_server_accepts_it(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.handler = lambda request: '{"answer": "4"}'
    reply = await make_model(server.base_url).generate(chat_prompt(), schema=SCHEMA)
    assert reply.structured_mode == "json_schema"
    assert server.requests[0].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA, "strict": False},
    }


async def test_json_schema_rejected_falls_back_to_json_object_once(make_model: ModelFactory) -> None:
    with FakeOpenAI(lambda request: '{"answer": "4"}', reject_json_schema=True) as server:
        first = make_model(server.base_url)
        reply = await first.generate(chat_prompt(), schema=SCHEMA)
        assert reply.structured_mode == "json_object"
        assert reply.text == '{"answer": "4"}'

        # A second instance for the same endpoint (another agent role) goes straight to the mode that worked.
        second = make_model(server.base_url)
        reply2 = await second.generate(chat_prompt(), schema=SCHEMA)
        assert reply2.structured_mode == "json_object"

        formats = [r.response_format for r in server.requests]
        assert [f["type"] for f in formats if f] == ["json_schema", "json_object", "json_object"]
        assert formats[1] == {"type": "json_object", "schema": SCHEMA}
        assert structured_mode_cached(server.base_url, "test-model", PromptKind.CHAT) == "json_object"


async def test_500_that_blames_json_schema_is_a_rejection_not_an_outage(
    server: FakeOpenAI, make_model: ModelFactory
) -> None:
    # What llama-cpp-python's server (0.3.x) really answers to response_format type json_schema.
    message = (
        "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
    )
    server.enqueue(FakeResponse(500, json=error_body(message, "internal_server_error")), '{"answer": "4"}')
    reply = await make_model(server.base_url).generate(chat_prompt(), schema=SCHEMA)
    assert reply.structured_mode == "json_object"
    assert [r.response_format["type"] for r in server.requests] == ["json_schema", "json_object"]
    # A 500 that says nothing about the response_format is still an outage, retried elsewhere.
    server.enqueue(FakeResponse(500, json=error_body("out of memory", "server_error")))
    with pytest.raises(TransientModelError):
        await make_model(server.base_url).generate(chat_prompt(), schema=SCHEMA)


async def test_any_response_format_rejected_falls_back_to_prompt_mode(make_model: ModelFactory) -> None:
    with FakeOpenAI(lambda request: '{"answer": "4"}', reject_response_format=True) as server:
        model = make_model(server.base_url)
        prompt = chat_prompt()
        reply = await model.generate(prompt, schema=SCHEMA)
        assert reply.structured_mode == "prompt"
        assert len(server.requests) == 3
        last = server.requests[-1].json
        assert "response_format" not in last
        user = last["messages"][-1]
        assert user["role"] == "user"
        assert user["content"].startswith("What is 2 + 2?")
        assert "JSON object" in user["content"]
        assert json.dumps(SCHEMA, indent=1) in user["content"]
        # The caller's prompt is not modified.
        assert prompt.messages[-1].content == "What is 2 + 2?"

        await model.generate(prompt, schema=SCHEMA)
        assert len(server.requests) == 4
        assert server.requests[-1].response_format is None


async def test_prompt_mode_without_a_user_message_adds_one(make_model: ModelFactory) -> None:
    with FakeOpenAI(lambda request: "{}", reject_response_format=True) as server:
        await make_model(server.base_url).generate(Prompt([Message("system", "sys")]), schema=SCHEMA)
        messages = server.requests[-1].json["messages"]
        assert [m["role"] for m in messages] == ["system", "user"]
        assert "JSON schema" in messages[-1]["content"]


async def test_completion_kind_sends_response_format_and_falls_back(make_model: ModelFactory) -> None:
    with FakeOpenAI(lambda request: '{"answer": "4"}') as server:
        model = make_model(server.base_url, prompt_kind=PromptKind.COMPLETION)
        reply = await model.generate(Prompt([], completion="Q: 2+2\nA:"), schema=SCHEMA)
        assert reply.structured_mode == "json_schema"
        assert server.requests[0].path == COMPLETIONS_PATH
        assert server.requests[0].response_format["type"] == "json_schema"

    structured_mode_cache_clear()
    with FakeOpenAI(lambda request: '{"answer": "4"}', reject_response_format=True) as server:
        model = make_model(server.base_url, prompt_kind=PromptKind.COMPLETION)
        reply = await model.generate(Prompt([], completion="Q: 2+2\nA:"), schema=SCHEMA)
        assert reply.structured_mode == "prompt"
        text = server.requests[-1].json["prompt"]
        # The instruction goes first so the prompt still ends with the cue the base model continues.
        assert text.endswith("Q: 2+2\nA:")
        assert "JSON object" in text


async def test_auth_errors_while_schema_sent_are_not_rejections(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.enqueue(FakeResponse(401, json=error_body("Incorrect API key provided")))
    with pytest.raises(ModelError) as info:
        await make_model(server.base_url).generate(chat_prompt(), schema=SCHEMA)
    assert not isinstance(info.value, TransientModelError)
    assert len(server.requests) == 1  # no fallback on 401


async def test_400_for_another_reason_does_not_downgrade_the_cache(
    server: FakeOpenAI, make_model: ModelFactory
) -> None:
    server.handler = lambda request: FakeResponse(400, json=error_body("maximum context length exceeded"))
    with pytest.raises(ModelError, match="maximum context length"):
        await make_model(server.base_url).generate(chat_prompt(), schema=SCHEMA)
    assert len(server.requests) == 3  # every mode tried, the last without response_format
    assert structured_mode_cached(server.base_url, "test-model", PromptKind.CHAT) is None


# -- error mapping ---------------------------------------------------------------------------------------------


async def test_429_is_transient_with_retry_after_seconds(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.enqueue(FakeResponse(429, json=error_body("Rate limit reached"), headers={"Retry-After": "7"}))
    with pytest.raises(TransientModelError, match="Rate limit reached") as info:
        await make_model(server.base_url).generate(chat_prompt())
    assert info.value.retry_after == 7.0


async def test_retry_after_as_http_date(server: FakeOpenAI, make_model: ModelFactory) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.enqueue(FakeResponse(503, text="busy", headers={"Retry-After": when}))
    with pytest.raises(TransientModelError, match="busy") as info:
        await make_model(server.base_url).generate(chat_prompt())
    assert info.value.retry_after is not None
    assert 25 <= info.value.retry_after <= 31


def test_parse_retry_after_variants() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "2.5"})) == 2.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500", "Retry-After": "9"})) == 1.5
    assert parse_retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(server: FakeOpenAI, make_model: ModelFactory, status: int) -> None:
    server.enqueue(FakeResponse(status, json=error_body("upstream trouble", "server_error")))
    with pytest.raises(TransientModelError, match=f"HTTP {status}: upstream trouble") as info:
        await make_model(server.base_url).generate(chat_prompt())
    assert info.value.retry_after is None


async def test_401_says_which_variable_to_set(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.enqueue(FakeResponse(401, json=error_body("Incorrect API key provided: sk-...")))
    with pytest.raises(ModelError) as info:
        await make_model(server.base_url).generate(chat_prompt())
    assert not isinstance(info.value, TransientModelError)
    message = str(info.value)
    assert "Incorrect API key provided" in message
    assert "FLEX_API_KEY" in message and "OPENAI_API_KEY" in message


async def test_other_4xx_is_permanent_with_the_server_message(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.enqueue(FakeResponse(404, json=error_body("The model `nope` does not exist")))
    with pytest.raises(ModelError, match="does not exist") as info:
        await make_model(server.base_url).generate(chat_prompt())
    assert not isinstance(info.value, TransientModelError)

    server.enqueue(FakeResponse(400, text="plain text complaint"))
    with pytest.raises(ModelError, match="plain text complaint") as info:
        await make_model(server.base_url).generate(chat_prompt())
    assert not isinstance(info.value, TransientModelError)


@pytest.mark.parametrize(
    "response",
    [
        FakeResponse(200, text="<html>proxy error</html>"),
        FakeResponse(200, text='{"choices": [{"message": {"content": "cut'),
        FakeResponse(200, json={"choices": []}),
        FakeResponse(200, json={"unexpected": True}),
        FakeResponse(200, json={"choices": [{"message": {"role": "assistant", "content": None}}]}),
    ],
    ids=["html", "truncated", "no-choices", "wrong-shape", "null-content"],
)
async def test_unreadable_200_is_transient(
    server: FakeOpenAI, make_model: ModelFactory, response: FakeResponse
) -> None:
    server.enqueue(response)
    with pytest.raises(TransientModelError, match="HTTP 200"):
        await make_model(server.base_url).generate(chat_prompt())


async def test_timeout_is_transient(server: FakeOpenAI, make_model: ModelFactory) -> None:
    server.enqueue(FakeResponse(delay=1.0, reply="too late"))
    with pytest.raises(TransientModelError, match="timed out"):
        await make_model(server.base_url, timeout=0.2).generate(chat_prompt())


async def test_connection_refused_is_transient(make_model: ModelFactory) -> None:
    with FakeOpenAI() as server:
        base_url = server.base_url
    # The server is gone; nothing listens on the port any more.
    with pytest.raises(TransientModelError, match="connection failed"):
        await make_model(base_url).generate(chat_prompt())


async def test_shared_client_is_not_closed() -> None:
    with FakeOpenAI() as server:
        async with httpx.AsyncClient() as client:
            model = OpenAICompatModel("m", server.base_url, api_key=None, http=client)
            await model.generate(chat_prompt())
            await model.aclose()
            assert not client.is_closed
        owned = OpenAICompatModel("m", server.base_url, api_key=None)
        await owned.aclose()
        assert owned._http.is_closed


# -- the fake server itself ----------------------------------------------------------------------------------


async def test_fake_server_routes_and_scripting() -> None:
    def broken(request: FakeRequest) -> str:
        raise RuntimeError("handler bug")

    with FakeOpenAI(broken, model_id="tiny") as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            models = (await client.get("/models")).json()
            assert models["data"][0]["id"] == "tiny"
            assert (await client.post("/nowhere", json={})).status_code == 404
            assert (await client.post("/chat/completions", content=b"[1]")).status_code == 400
            failed = await client.post("/chat/completions", json={"messages": []})
            assert failed.status_code == 500 and "handler bug" in failed.json()["error"]["message"]
            server.enqueue({"custom": True}, FakeResponse(418, text="teapot", headers={"X-Fake": "1"}))
            assert (await client.post("/completions", json={"prompt": "p"})).json() == {"custom": True}
            teapot = await client.post("/completions", json={"prompt": "p"})
            assert (teapot.status_code, teapot.text, teapot.headers["x-fake"]) == (418, "teapot", "1")
        assert [r.path for r in server.requests_to(COMPLETIONS_PATH)] == [COMPLETIONS_PATH] * 2


async def test_fake_server_stops_promptly_during_a_slow_reply() -> None:
    server = FakeOpenAI(lambda request: FakeResponse(delay=30.0, reply="never")).start()
    model = OpenAICompatModel("m", server.base_url, api_key=None, timeout=0.2)
    try:
        with pytest.raises(TransientModelError):
            await model.generate(chat_prompt())
    finally:
        await model.aclose()
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 10.0  # not the reply's 30 s: a hang detector, not a speed test


def test_fake_server_runs_standalone() -> None:
    root = Path(__file__).parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_openai", "--reply", "standalone"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        reply = httpx.post(f"{base_url}/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert reply.json()["choices"][0]["message"]["content"] == "standalone"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
