"""generate_structured, extract_json_object and the FunctionModel test double."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from flexlearn.errors import ModelError, TransientModelError
from flexlearn.models.base import GenerationOptions, Message, Prompt, PromptKind, Reply
from flexlearn.models.function import FunctionModel
from flexlearn.models.middleware import Meter, RetryPolicy, build_stack
from flexlearn.models.openai_compat import OpenAICompatModel
from flexlearn.models.structured import extract_json_object, generate_structured, parse_structured
from tests.support.fake_openai import FakeOpenAI, FakeResponse, error_body


class Verdict(BaseModel):
    correct: bool
    reason: str


@pytest.fixture
async def http_model(server: FakeOpenAI) -> AsyncIterator[OpenAICompatModel]:
    model = OpenAICompatModel("m", server.base_url, api_key=None)
    yield model
    await model.aclose()


def critic_prompt() -> Prompt:
    return Prompt(messages=[Message("system", "You judge answers."), Message("user", "Is 2 + 2 = 5?")])


# -- extract_json_object -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure! Here it is: {"a": 1} Hope that helps.', {"a": 1}),
        ('```json\n{"a": {"b": [1, 2]}}\n```', {"a": {"b": [1, 2]}}),
        ('```\n{"a": 1}\n```\ntrailing {"b": 2}', {"a": 1}),
        ('{"a": "a } brace and a { brace in a string"}', {"a": "a } brace and a { brace in a string"}),
        ('{"a": 1,}', {"a": 1}),
        ('{"a": [1, 2,],}', {"a": [1, 2]}),
        ("{'a': True, 'b': None}", {"a": True, "b": None}),
        ('I {think} so. {"a": 1}', {"a": 1}),
        ('an unclosed { brace, then {"a": 1}', {"a": 1}),
        ('{"a": 1} {"b": 2}', {"a": 1}),
        ('{"outer": {"inner": 1}, broken}', None),  # no object nested in a broken one
        ("[1, 2, 3]", None),
        ("no json here", None),
        ("", None),
        ('{"a": "it\'s fine"}', {"a": "it's fine"}),
        ('Well {it\'s} tricky. {"reason": "it\'s 4"}', {"reason": "it's 4"}),
        ("{'a': \"it's\"}", {"a": "it's"}),
        ("{'a': 1} and later {\"b\": 2}", {"b": 2}),  # strict JSON anywhere beats a Python literal
        ('{"a": "escaped \\" quote { brace"}', {"a": 'escaped " quote { brace'}),
    ],
)
def test_extract_json_object(text: str, expected: dict[str, Any] | None) -> None:
    assert extract_json_object(text) == expected


def test_extract_json_object_bounds_its_work_on_pathological_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # Work is counted in characters examined, not timed: thousands of unclosed braces would make an unbounded
    # scan quadratic (5,000 braces: 12.5 million characters per pass).
    from flexlearn.models import structured

    examined = [0]
    scan = structured._balanced_end

    def counted(text: str, start: int, limit: int, quotes: str) -> int | None:
        end = scan(text, start, limit, quotes)
        examined[0] += (end + 1 if end is not None else min(len(text), start + limit)) - start
        return end

    monkeypatch.setattr(structured, "_balanced_end", counted)
    assert extract_json_object("{" * 5000) is None
    extract_json_object("{ " * 5000 + '{"a": 1}')  # may or may not find it; must not take long
    assert extract_json_object("{ " * 100 + '{"a": 1}') == {"a": 1}
    # Two texts of two passes (JSON, then Python literals) over at most two sources each, every scan bounded.
    assert examined[0] <= 2 * 2 * 2 * structured._MAX_SCAN


def test_parse_structured_reports_why() -> None:
    assert parse_structured("nothing", Verdict) == (None, "no JSON object found in the reply")
    value, error = parse_structured('{"correct": "maybe"}', Verdict)
    assert value is None and error is not None
    assert "correct" in error and "reason" in error
    value, error = parse_structured('{"correct": false, "reason": "2+2=4"}', Verdict)
    assert value == Verdict(correct=False, reason="2+2=4") and error is None


# -- generate_structured over HTTP -------------------------------------------------------------------------------


async def test_first_valid_reply_is_returned(server: FakeOpenAI, http_model: OpenAICompatModel) -> None:
    server.enqueue('```json\n{"correct": false, "reason": "2 + 2 is 4"}\n```')
    result = await generate_structured(http_model, critic_prompt(), Verdict, role="critic")
    assert result.ok
    assert result.value == Verdict(correct=False, reason="2 + 2 is 4")
    assert (result.error, result.attempts, result.structured_mode) == (None, 1, "json_schema")
    assert len(result.raw) == 1
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    sent = server.requests[0].response_format
    assert sent is not None and sent["json_schema"]["schema"] == Verdict.model_json_schema()


async def test_invalid_replies_are_retried_with_the_error_fed_back(
    server: FakeOpenAI, http_model: OpenAICompatModel
) -> None:
    server.enqueue(
        "I think it is wrong.",
        '{"correct": "no idea"}',
        '{"correct": false, "reason": "4 != 5"}',
    )
    result = await generate_structured(http_model, critic_prompt(), Verdict, role="critic", attempts=3)

    assert result.value == Verdict(correct=False, reason="4 != 5")
    assert result.attempts == 3
    assert result.raw == ["I think it is wrong.", '{"correct": "no idea"}', '{"correct": false, "reason": "4 != 5"}']
    assert result.usage.completion_tokens == sum(len(r.split()) for r in result.raw)

    first, second, third = (r.json["messages"] for r in server.requests)
    assert len(first) == 2
    # Second try: the bad reply as the assistant's turn, then the complaint.
    assert second[:2] == first
    assert second[2] == {"role": "assistant", "content": "I think it is wrong."}
    assert second[3]["role"] == "user"
    assert second[3]["content"].startswith("That reply was invalid: no JSON object found")
    assert second[3]["content"].endswith("Reply with only a JSON object matching the schema.")
    # Third try: only the latest bad reply and its validation error (the prompt does not keep growing).
    assert len(third) == 4
    assert third[2]["content"] == '{"correct": "no idea"}'
    assert "correct" in third[3]["content"] and "reason" in third[3]["content"]


async def test_always_invalid_gives_none_and_counts_a_failure(
    server: FakeOpenAI, http_model: OpenAICompatModel
) -> None:
    server.handler = lambda request: "still not json"
    meter = Meter()
    model = build_stack(http_model, max_concurrency=1, retry=RetryPolicy(), meter=meter)

    result = await generate_structured(model, critic_prompt(), Verdict, role="critic", attempts=3, meter=meter)

    assert result.value is None and not result.ok
    assert result.error is not None and "no valid reply after 3 attempts" in result.error
    assert result.attempts == 3
    assert len(server.requests) == 3
    stats = meter.stats("critic")
    assert (stats.calls, stats.failures) == (3, 1)


async def test_a_server_that_stays_down_raises(server: FakeOpenAI, http_model: OpenAICompatModel) -> None:
    server.handler = lambda request: FakeResponse(503, json=error_body("down", "server_error"))
    meter = Meter()
    fast = RetryPolicy(max_attempts=2, base_delay=0.001, jitter=0.0)
    model = build_stack(http_model, max_concurrency=1, retry=fast, meter=meter)

    with pytest.raises(ModelError, match=r"gave up after 2 attempts.*down"):
        await generate_structured(model, critic_prompt(), Verdict, role="critic", meter=meter)
    # The metered stack counted the failed call; generate_structured does not count it twice.
    assert meter.stats("critic").failures == 1


async def test_structured_over_a_server_without_response_format(http_model: OpenAICompatModel) -> None:
    with FakeOpenAI(lambda r: '{"correct": true, "reason": "ok"}', reject_response_format=True) as server:
        model = OpenAICompatModel("m", server.base_url, api_key=None)
        try:
            result = await generate_structured(model, critic_prompt(), Verdict, role="critic")
        finally:
            await model.aclose()
    assert result.value == Verdict(correct=True, reason="ok")
    assert result.structured_mode == "prompt"
    assert '"reason"' in server.requests[-1].json["messages"][-1]["content"]


# -- with FunctionModel ------------------------------------------------------------------------------------------


async def test_completion_kind_retries_the_same_prompt_with_a_new_seed() -> None:
    replies = iter(["nope", '{"correct": true, "reason": "r"}'])
    model = FunctionModel(lambda p, r, s: next(replies), prompt_kind=PromptKind.COMPLETION)
    prompt = Prompt([Message("user", "q")], completion="Q: q\nA:")

    result = await generate_structured(
        model, prompt, Verdict, role="actor", options=GenerationOptions(seed=10, temperature=0.0)
    )

    assert result.value == Verdict(correct=True, reason="r")
    assert [c.prompt for c in model.calls] == [prompt, prompt]
    assert [c.options.seed for c in model.calls if c.options] == [10, 11]
    assert all(c.role == "actor" for c in model.calls)
    assert model.calls[0].schema == Verdict.model_json_schema()


async def test_attempts_are_bounded_and_at_least_one() -> None:
    model = FunctionModel(lambda p, r, s: "x")
    assert (await generate_structured(model, critic_prompt(), Verdict, role="a", attempts=0)).attempts == 1
    assert (await generate_structured(model, critic_prompt(), Verdict, role="a", attempts=5)).attempts == 5
    assert len(model.calls) == 6


async def test_function_model_sync_async_and_usage() -> None:
    sync = FunctionModel(lambda p, r, s: f"{r}:{len(p.messages)}:{s is not None}")
    reply = await sync.generate(Prompt([Message("user", "abcdefgh")]), role="critic", schema={"type": "object"})
    assert reply.text == "critic:1:True"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 4)  # len / 4, rounded up
    assert reply.structured_mode == "json_schema"

    async def answer(p: Prompt, role: str, schema: dict[str, Any] | None) -> str:
        return p.completion_text()

    async_model = FunctionModel(answer, name="echo", prompt_kind=PromptKind.COMPLETION)
    reply = await async_model.generate(Prompt([], completion="base text"))
    assert reply.text == "base text"
    assert reply.structured_mode == "none"
    assert async_model.name == "echo"


async def test_function_model_can_return_a_reply_or_raise() -> None:
    full = Reply("t", structured_mode="grammar")
    assert await FunctionModel(lambda p, r, s: full).generate(critic_prompt()) is full

    def boom(p: Prompt, r: str, s: object) -> str:
        raise TransientModelError("flaky")

    with pytest.raises(TransientModelError):
        await FunctionModel(boom).generate(critic_prompt())

    def wrong(p: Prompt, r: str, s: object) -> Any:
        return 42

    with pytest.raises(TypeError):
        await FunctionModel(wrong).generate(critic_prompt())


async def test_a_model_error_is_raised_not_turned_into_no_value() -> None:
    def fail(p: Prompt, r: str, s: object) -> str:
        raise ModelError("permanent")

    with pytest.raises(ModelError, match="permanent"):
        await generate_structured(FunctionModel(fail), critic_prompt(), Verdict, role="updater")
