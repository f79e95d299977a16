"""AnthropicModel against a real local HTTP server (tests/support/fake_anthropic.py), and anthropic: URIs."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from flexlearn.errors import ConfigError, ModelError, TransientModelError
from flexlearn.models import AnthropicModel, from_uri
from flexlearn.models.anthropic import ANTHROPIC_BASE_URL, ANTHROPIC_VERSION, anthropic_messages
from flexlearn.models.base import GenerationOptions, Message, Prompt, PromptKind
from flexlearn.models.structured import generate_structured
from tests.support.fake_anthropic import (
    MESSAGES_PATH,
    FakeAnthropic,
    FakeRequest,
    FakeResponse,
    error_body,
    message_body,
    tool_use_body,
)

KEY = "sk-ant-test"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}

ModelFactory = Callable[..., AnthropicModel]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as server:
        yield server


@pytest.fixture
async def make_model(fake: FakeAnthropic) -> AsyncIterator[ModelFactory]:
    made: list[AnthropicModel] = []

    def make(**kwargs: Any) -> AnthropicModel:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("base_url", fake.base_url)
        model = AnthropicModel(kwargs.pop("model", "claude-test"), **kwargs)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


@pytest.fixture
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FLEX_MODEL", "FLEX_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FLEX_PROMPT_KIND"):
        monkeypatch.delenv(var, raising=False)


def chat_prompt(text: str = "What is 2 + 2?") -> Prompt:
    return Prompt(messages=[Message("system", "You are terse."), Message("user", text)])


# -- requests and replies --------------------------------------------------------------------------------------


async def test_round_trip_separates_system_and_reads_usage(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    fake.handler = lambda request: "four, obviously"
    model = make_model()

    reply = await model.generate(chat_prompt())

    assert reply.text == "four, obviously"
    # The fake counts words: "You are terse." + "What is 2 + 2?" = 3 + 5.
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (8, 2)
    assert reply.latency_s > 0
    assert reply.structured_mode == "none"
    assert model.name == "anthropic:claude-test"
    assert model.prompt_kind is PromptKind.CHAT
    [request] = fake.requests
    assert request.path == MESSAGES_PATH
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "model": "claude-test",
        "max_tokens": 4096,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
    }


async def test_options_are_sent_and_seed_is_dropped(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    model = make_model(default_max_tokens=100)
    await model.generate(chat_prompt(), options=GenerationOptions(max_tokens=17, temperature=0.2, seed=3))
    await model.generate(Prompt(messages=[Message("user", "hi")]), options=GenerationOptions(temperature=0.0))

    first, second = (r.json for r in fake.requests)
    assert (first["max_tokens"], first["temperature"]) == (17, 0.2)
    assert "seed" not in first
    # No system message means no system field; max_tokens falls back to the model's default.
    assert "system" not in second
    assert (second["max_tokens"], second["temperature"]) == (100, 0.0)


async def test_each_role_gets_its_default_reply_cap(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    model = make_model()
    await model.generate(chat_prompt(), role="updater")
    await model.generate(chat_prompt(), role="distiller")
    assert [r.json["max_tokens"] for r in fake.requests] == [1024, 2048]


def test_messages_are_fixed_up_to_alternate_from_user() -> None:
    system, turns = anthropic_messages(
        [
            Message("system", "Rule one."),
            Message("assistant", "Earlier answer."),
            Message("system", "Rule two."),
            Message("assistant", "More of it."),
            Message("user", "First."),
            Message("user", ""),
            Message("user", "Second."),
            Message("assistant", "Reply."),
        ]
    )
    assert system == "Rule one.\n\nRule two."
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[1]["content"] == "Earlier answer.\n\nMore of it."
    assert turns[2]["content"] == "First.\n\nSecond."
    assert turns[0]["content"].strip()  # the API refuses empty text

    # A prompt of only system text still sends one (non-empty) user turn.
    assert anthropic_messages([Message("system", "Only rules.")])[1] == [{"role": "user", "content": "Continue."}]


async def test_fixed_up_messages_are_accepted_by_the_server(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    # The fake answers 400 to any conversation that does not alternate starting with user, as the API does.
    prompt = Prompt(
        messages=[
            Message("assistant", "Example answer."),
            Message("assistant", "Another."),
            Message("user", "Now you."),
            Message("user", "Be brief."),
        ]
    )
    reply = await make_model().generate(prompt)

    assert reply.text == "ok"
    roles = [m["role"] for m in fake.requests[0].json["messages"]]
    assert roles == ["user", "assistant", "user"]


async def test_schema_is_enforced_with_a_forced_tool_call(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    fake.enqueue(tool_use_body({"answer": "4", "note": "ünïcode"}, input_tokens=30, output_tokens=9))
    reply = await make_model().generate(chat_prompt(), schema=SCHEMA)

    assert json.loads(reply.text) == {"answer": "4", "note": "ünïcode"}
    assert reply.structured_mode == "tool"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (30, 9)
    body = fake.requests[0].json
    [tool] = body["tools"]
    assert tool["name"] == "reply"
    assert tool["input_schema"] == SCHEMA
    assert tool["description"]
    assert body["tool_choice"] == {"type": "tool", "name": "reply"}


async def test_schema_reply_without_a_tool_call_falls_back_to_text(
    fake: FakeAnthropic, make_model: ModelFactory
) -> None:
    fake.enqueue(message_body('{"answer": "4"}'))
    reply = await make_model().generate(chat_prompt(), schema=SCHEMA)

    assert reply.text == '{"answer": "4"}'
    assert reply.structured_mode == "none"


async def test_text_blocks_are_concatenated(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    body = message_body("Hello, ")
    body["content"].append({"type": "text", "text": "world."})
    fake.enqueue(body)
    assert (await make_model().generate(chat_prompt())).text == "Hello, world."


class Answer(BaseModel):
    answer: int
    reason: str


async def test_generate_structured_through_tool_use(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    def handler(request: FakeRequest) -> dict[str, Any]:
        schema = request.json["tools"][0]["input_schema"]
        assert set(schema["required"]) == {"answer", "reason"}
        return tool_use_body({"answer": 4, "reason": "2 + 2"})

    fake.handler = handler
    result = await generate_structured(make_model(), chat_prompt(), Answer, role="actor")

    assert result.ok, result.error
    assert result.value == Answer(answer=4, reason="2 + 2")
    assert result.structured_mode == "tool"
    assert result.attempts == 1


async def test_generate_structured_retries_after_an_invalid_tool_input(
    fake: FakeAnthropic, make_model: ModelFactory
) -> None:
    # The retry prompt appends the bad reply as an assistant turn and feedback as a user turn; the fake's
    # alternation check proves the conversation is still one the API accepts.
    fake.enqueue(tool_use_body({"answer": "four"}), tool_use_body({"answer": 4, "reason": "sum"}))
    result = await generate_structured(make_model(), chat_prompt(), Answer, role="critic")

    assert result.value == Answer(answer=4, reason="sum")
    assert result.attempts == 2
    roles = [m["role"] for m in fake.requests[1].json["messages"]]
    assert roles == ["user", "assistant", "user"]


# -- errors -----------------------------------------------------------------------------------------------------


async def test_429_is_transient_with_retry_after(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    fake.enqueue(
        FakeResponse(
            429, json=error_body("Number of requests exceeded", "rate_limit_error"), headers={"Retry-After": "7"}
        )
    )
    with pytest.raises(TransientModelError, match="Number of requests exceeded") as info:
        await make_model().generate(chat_prompt())
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("status", [529, 500, 503])
async def test_overloaded_and_5xx_are_transient(fake: FakeAnthropic, make_model: ModelFactory, status: int) -> None:
    fake.enqueue(FakeResponse(status, json=error_body("Overloaded", "overloaded_error")))
    with pytest.raises(TransientModelError, match=f"HTTP {status}: Overloaded") as info:
        await make_model().generate(chat_prompt())
    assert info.value.retry_after is None


async def test_401_says_which_variable_to_set(make_model: ModelFactory) -> None:
    with pytest.raises(ModelError, match="invalid x-api-key") as info:
        await make_model(api_key="wrong").generate(chat_prompt())
    assert not isinstance(info.value, TransientModelError)
    assert "ANTHROPIC_API_KEY" in str(info.value)


async def test_400_is_permanent_with_the_api_message(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    fake.enqueue(FakeResponse(400, json=error_body("prompt is too long: 210000 tokens > 200000 maximum")))
    with pytest.raises(ModelError, match="HTTP 400: prompt is too long") as info:
        await make_model().generate(chat_prompt())
    assert not isinstance(info.value, TransientModelError)


async def test_404_names_model_and_base_url(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    fake.enqueue(FakeResponse(404, json=error_body("model: claude-nope", "not_found_error")))
    with pytest.raises(ModelError, match="claude-nope") as info:
        await make_model(model="claude-nope").generate(chat_prompt())
    assert "without /v1" in str(info.value)


async def test_unreadable_200_is_transient(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    fake.enqueue(FakeResponse(200, text="<html>proxy</html>"), {"type": "message"})
    model = make_model()
    with pytest.raises(TransientModelError, match="not JSON"):
        await model.generate(chat_prompt())
    with pytest.raises(TransientModelError, match="unexpected body"):
        await model.generate(chat_prompt())


async def test_timeout_and_refused_connection_are_transient(fake: FakeAnthropic, make_model: ModelFactory) -> None:
    fake.enqueue(FakeResponse(delay=2.0, reply="late"))
    with pytest.raises(TransientModelError, match="timed out"):
        await make_model(timeout=0.2).generate(chat_prompt())

    with socket.socket() as sock:  # a port that was free a moment ago, with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientModelError, match="connection failed"):
        await make_model(base_url=f"http://127.0.0.1:{port}").generate(chat_prompt())


async def test_completion_kind_is_refused(make_model: ModelFactory) -> None:
    model = make_model()
    with pytest.raises(ConfigError, match="chat prompts only"):
        model.prompt_kind = PromptKind.COMPLETION
    model.prompt_kind = PromptKind.CHAT  # asking for what it already is, is fine
    assert model.prompt_kind is PromptKind.CHAT


async def test_shared_client_is_not_closed(fake: FakeAnthropic) -> None:
    async with httpx.AsyncClient() as http:
        model = AnthropicModel("claude-test", api_key=KEY, base_url=fake.base_url, http=http)
        await model.aclose()
        assert (await model.generate(chat_prompt())).text == "ok"
        assert not http.is_closed


# -- URIs -------------------------------------------------------------------------------------------------------


def anthropic(uri: str, **kwargs: Any) -> AnthropicModel:
    model = from_uri(uri, **kwargs)
    assert isinstance(model, AnthropicModel)
    return model


@pytest.mark.usefixtures("_clean_env")
def test_uri_key_from_env_with_flex_api_key_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-anthropic")
    model = anthropic("anthropic:claude-sonnet-4-5", timeout=9.0)
    assert (model.model, model.base_url, model.name) == (
        "claude-sonnet-4-5",
        ANTHROPIC_BASE_URL,
        "anthropic:claude-sonnet-4-5",
    )
    assert model._api_key == "from-anthropic"
    assert model.timeout == 9.0

    monkeypatch.setenv("FLEX_API_KEY", "from-flex")
    assert anthropic("ANTHROPIC:claude-sonnet-4-5")._api_key == "from-flex"


@pytest.mark.usefixtures("_clean_env")
def test_uri_without_a_key_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "not-for-anthropic")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "  ")  # blank counts as unset
    with pytest.raises(ConfigError, match="set ANTHROPIC_API_KEY"):
        from_uri("anthropic:claude-sonnet-4-5")


@pytest.mark.usefixtures("_clean_env")
async def test_uri_with_base_url_talks_to_the_gateway(monkeypatch: pytest.MonkeyPatch, fake: FakeAnthropic) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    model = anthropic(f"anthropic:org/claude@rev@{fake.base_url}/")
    try:
        assert (model.model, model.base_url) == ("org/claude@rev", fake.base_url)
        assert (await model.generate(chat_prompt())).text == "ok"
    finally:
        await model.aclose()
    assert fake.requests[0].headers["x-api-key"] == KEY


@pytest.mark.usefixtures("_clean_env")
def test_uri_with_base_url_may_go_without_a_key() -> None:
    # A gateway may add its own credentials, so only the official endpoint insists on a key up front.
    assert anthropic("anthropic:claude@http://127.0.0.1:4000")._api_key is None


@pytest.mark.usefixtures("_clean_env")
def test_uri_completion_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with pytest.raises(ConfigError, match="chat prompts only"):
        from_uri("anthropic:claude-sonnet-4-5", prompt_kind=PromptKind.COMPLETION)
    monkeypatch.setenv("FLEX_PROMPT_KIND", "completion")
    with pytest.raises(ConfigError, match="FLEX_PROMPT_KIND"):
        from_uri("anthropic:claude-sonnet-4-5")
    monkeypatch.setenv("FLEX_PROMPT_KIND", "chat")
    assert anthropic("anthropic:claude-sonnet-4-5").prompt_kind is PromptKind.CHAT


@pytest.mark.usefixtures("_clean_env")
@pytest.mark.parametrize(
    ("uri", "complaint"),
    [
        ("anthropic:", "names no model"),
        ("anthropic", "names no model"),
        ("anthropic:@https://gw.example", "names no model"),
        ("anthropic:claude@gw.example", "must be a base URL"),
        ("anthropic:my claude", "malformed model name"),
    ],
)
def test_bad_anthropic_uris(uri: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as info:
        from_uri(uri)
    assert "anthropic:claude-sonnet-4-5" in str(info.value)
