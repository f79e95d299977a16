"""Retry, concurrency limit and metering, against the real fake server where HTTP behaviour matters."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from flexlearn.errors import ConfigError, ModelError, TransientModelError
from flexlearn.models.base import ChatModel, Message, Prompt, PromptKind
from flexlearn.models.function import FunctionModel
from flexlearn.models.middleware import (
    LimitedModel,
    Meter,
    MeteredModel,
    RetryingModel,
    RetryPolicy,
    RoleStats,
    build_stack,
)
from flexlearn.models.openai_compat import OpenAICompatModel
from tests.support.fake_openai import FakeOpenAI, FakeResponse, error_body

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, jitter=0.0)


class RecordingSleep:
    """Stands in for asyncio.sleep: records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def http_model(server: FakeOpenAI) -> AsyncIterator[OpenAICompatModel]:
    model = OpenAICompatModel("m", server.base_url, api_key=None, timeout=5.0)
    yield model
    await model.aclose()


def prompt(text: str = "hello there") -> Prompt:
    return Prompt(messages=[Message("user", text)])


# -- RetryPolicy ---------------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.0)
    assert [policy.delay(n, None) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_honours_retry_after_and_jitter_never_goes_below_it() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0, jitter=0.25)
    rng = random.Random(7)
    for n in range(6):
        base = min(0.5 * 2**n, 30.0)
        delay = policy.delay(n, None, rng)
        assert base * 0.75 <= delay <= min(base * 1.25, 30.0)
        assert policy.delay(n, 4.0, rng) >= 4.0
    # max_delay bounds even a server hint.
    assert policy.delay(0, 600.0, rng) == 30.0


def test_retry_policy_validates() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(jitter=1.5)


# -- RetryingModel over HTTP -----------------------------------------------------------------------------------


async def test_429_with_retry_after_is_retried_and_the_wait_honours_it(
    server: FakeOpenAI, http_model: OpenAICompatModel
) -> None:
    server.enqueue(FakeResponse(429, json=error_body("slow down"), headers={"Retry-After": "1"}), "done")
    sleep = RecordingSleep()
    model = RetryingModel(http_model, RetryPolicy(base_delay=0.01, jitter=0.25), sleep=sleep)

    reply = await model.generate(prompt())

    assert reply.text == "done"
    assert len(server.requests) == 2
    assert len(sleep.delays) == 1
    assert sleep.delays[0] >= 1.0  # the server's hint, although the policy's own backoff is 0.01 s


async def test_two_500s_then_success(server: FakeOpenAI, http_model: OpenAICompatModel) -> None:
    server.enqueue(
        FakeResponse(500, json=error_body("boom", "server_error")),
        FakeResponse(500, text="Internal Server Error"),
        "finally",
    )
    meter = Meter()
    sleep = RecordingSleep()
    model = build_stack(http_model, max_concurrency=2, retry=FAST, meter=meter, sleep=sleep)

    reply = await model.generate(prompt(), role="critic")

    assert reply.text == "finally"
    assert len(server.requests) == 3
    assert sleep.delays == [0.01, 0.02]
    stats = meter.stats("critic")
    assert (stats.calls, stats.failures, stats.retries) == (1, 0, 2)


async def test_gives_up_after_max_attempts_with_the_chain_kept(
    server: FakeOpenAI, http_model: OpenAICompatModel
) -> None:
    server.handler = lambda request: FakeResponse(503, json=error_body("overloaded", "server_error"))
    sleep = RecordingSleep()
    model = RetryingModel(http_model, FAST, sleep=sleep)

    with pytest.raises(ModelError, match=r"gave up after 4 attempts: .*overloaded") as info:
        await model.generate(prompt())

    assert not isinstance(info.value, TransientModelError)  # so an outer retry layer would not loop again
    assert isinstance(info.value.__cause__, TransientModelError)
    assert len(server.requests) == 4
    assert len(sleep.delays) == 3


async def test_giving_up_counts_each_retry_and_one_attempt_never_waits() -> None:
    def always(p: Prompt, role: str, schema: object) -> str:
        raise TransientModelError("blip", retry_after=0.5)

    meter = Meter()
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, jitter=0.0)
    model = build_stack(FunctionModel(always), max_concurrency=1, retry=policy, meter=meter, sleep=sleep)
    with pytest.raises(ModelError, match="gave up after 3 attempts: blip") as info:
        await model.generate(prompt(), role="critic")
    assert isinstance(info.value.__cause__, TransientModelError)
    assert sleep.delays == [0.5, 0.5]  # the server's hint over the policy's 0.1 and 0.2
    assert all(type(delay) is float for delay in sleep.delays)
    stats = meter.stats("critic")
    assert (stats.calls, stats.failures, stats.retries) == (1, 1, 2)

    once = RetryingModel(FunctionModel(always), RetryPolicy(max_attempts=1), sleep=sleep)
    with pytest.raises(ModelError, match="gave up after 1 attempts: blip"):
        await once.generate(prompt())
    assert sleep.delays == [0.5, 0.5]


async def test_slow_reply_times_out_then_the_retry_succeeds(server: FakeOpenAI) -> None:
    server.enqueue(FakeResponse(delay=1.0, reply="too late"), "in time")
    inner = OpenAICompatModel("m", server.base_url, api_key=None, timeout=0.2)
    try:
        model = RetryingModel(inner, FAST, sleep=RecordingSleep())
        reply = await model.generate(prompt())
    finally:
        await inner.aclose()
    assert reply.text == "in time"
    assert len(server.requests) == 2


async def test_malformed_json_on_200_is_retried(server: FakeOpenAI, http_model: OpenAICompatModel) -> None:
    server.enqueue(FakeResponse(200, text="{not json at all"), "fine")
    model = RetryingModel(http_model, FAST, sleep=RecordingSleep())
    assert (await model.generate(prompt())).text == "fine"
    assert len(server.requests) == 2


async def test_permanent_errors_pass_through_at_once(server: FakeOpenAI, http_model: OpenAICompatModel) -> None:
    server.handler = lambda request: FakeResponse(401, json=error_body("bad key"))
    sleep = RecordingSleep()
    model = RetryingModel(http_model, FAST, sleep=sleep)
    with pytest.raises(ModelError, match="bad key") as info:
        await model.generate(prompt())
    assert "gave up" not in str(info.value)
    assert len(server.requests) == 1
    assert sleep.delays == []


async def test_real_sleep_is_used_by_default() -> None:
    calls = 0

    def flaky(p: Prompt, role: str, schema: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientModelError("blip", retry_after=0.05)
        return "ok"

    model = RetryingModel(FunctionModel(flaky), RetryPolicy(base_delay=0.001, jitter=0.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await model.generate(prompt())).text == "ok"
    assert loop.time() - started >= 0.045


# -- LimitedModel -----------------------------------------------------------------------------------------------


async def test_concurrency_limit_is_respected_at_the_server(server: FakeOpenAI) -> None:
    server.handler = lambda request: FakeResponse(delay=0.15, reply="x")
    inner = OpenAICompatModel("m", server.base_url, api_key=None)
    try:
        model = build_stack(inner, max_concurrency=2, retry=None, meter=Meter())
        replies = await asyncio.gather(*(model.generate(prompt()) for _ in range(6)))
    finally:
        await inner.aclose()
    assert [r.text for r in replies] == ["x"] * 6
    assert server.max_in_flight == 2


async def test_unlimited_calls_do_overlap(server: FakeOpenAI) -> None:
    # The control for the test above: without the limiter the fake does see parallel requests.
    server.handler = lambda request: FakeResponse(delay=0.25, reply="x")
    inner = OpenAICompatModel("m", server.base_url, api_key=None)
    try:
        await asyncio.gather(*(inner.generate(prompt()) for _ in range(4)))
    finally:
        await inner.aclose()
    assert server.max_in_flight >= 3  # not == 4: on a loaded machine the last may connect late


def test_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        LimitedModel(FunctionModel(lambda p, r, s: ""), 0)


# -- Meter ------------------------------------------------------------------------------------------------------


async def test_meter_counts_calls_and_tokens_per_role(server: FakeOpenAI, http_model: OpenAICompatModel) -> None:
    server.handler = lambda request: "one two three"
    meter = Meter()
    model = build_stack(http_model, max_concurrency=4, retry=FAST, meter=meter)

    await model.generate(prompt("a b"), role="actor")
    await model.generate(prompt("a b c d"), role="actor")
    await model.generate(prompt("x"), role="critic")
    server.enqueue(FakeResponse(400, json=error_body("nope")))
    with pytest.raises(ModelError):
        await model.generate(prompt("y"), role="critic")
    meter.record_failure("distiller")

    snap = meter.snapshot()
    assert list(snap) == ["actor", "critic", "distiller"]
    assert snap["actor"]["calls"] == 2
    assert snap["actor"]["prompt_tokens"] == 6  # words: 2 + 4
    assert snap["actor"]["completion_tokens"] == 6
    assert snap["actor"]["failures"] == 0
    assert snap["actor"]["latency_s"] > 0
    assert (snap["critic"]["calls"], snap["critic"]["failures"]) == (2, 1)
    assert (snap["critic"]["prompt_tokens"], snap["critic"]["completion_tokens"]) == (1, 3)
    assert (snap["distiller"]["calls"], snap["distiller"]["failures"]) == (0, 1)

    total = meter.total()
    assert (total.calls, total.failures, total.prompt_tokens, total.completion_tokens) == (4, 2, 7, 9)
    assert meter.stats("updater") == RoleStats()


async def test_meter_latency_includes_backoff() -> None:
    calls = 0

    def flaky(p: Prompt, role: str, schema: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientModelError("blip", retry_after=0.05)
        return "ok"

    meter = Meter()
    model = build_stack(
        FunctionModel(flaky), max_concurrency=1, retry=RetryPolicy(base_delay=0.001, jitter=0.0), meter=meter
    )
    await model.generate(prompt(), role="actor")
    stats = meter.stats("actor")
    assert (stats.calls, stats.retries) == (1, 1)
    assert stats.latency_s >= 0.045


# -- wrappers ---------------------------------------------------------------------------------------------------


async def test_wrappers_expose_the_inner_model_and_forward_aclose() -> None:
    inner = FunctionModel(lambda p, r, s: "hi", name="fn", prompt_kind=PromptKind.COMPLETION)
    stack = build_stack(inner, max_concurrency=1, retry=RetryPolicy(), meter=Meter())
    for model in (stack, RetryingModel(inner), LimitedModel(inner, 1), MeteredModel(inner, Meter())):
        assert model.name == "fn"
        assert model.prompt_kind is PromptKind.COMPLETION
        assert isinstance(model, ChatModel)
    await stack.aclose()
    assert inner.closed
