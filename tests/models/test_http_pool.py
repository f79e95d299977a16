"""ClientPool: the HTTP backends' requests spread over httpx clients of a few connections each."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from flexlearn.models import AnthropicModel
from flexlearn.models.http import REQUESTS_PER_CLIENT, ClientPool
from flexlearn.models.openai_compat import OpenAICompatModel
from tests.support.fake_openai import CHAT_PATH, FakeOpenAI, FakeRequest, FakeResponse


def slow(request: FakeRequest) -> FakeResponse:
    return FakeResponse(delay=0.2, reply="ok")


async def test_requests_in_flight_open_a_client_per_few() -> None:
    with FakeOpenAI(slow) as server:
        pool = ClientPool(timeout=10, per_client=4)
        assert pool.clients == 1  # the first one is built with the model, as one shared client was
        url = server.base_url + "/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        replies = await asyncio.gather(*(pool.post(url, json=body) for _ in range(10)))
        assert [r.status_code for r in replies] == [200] * 10
        assert pool.clients == 3  # 4 + 4 + 2 in flight
        # One at a time they all go to the first client: no more clients, and the connections are reused.
        for _ in range(3):
            assert (await pool.post(url, json=body)).status_code == 200
        assert pool.clients == 3
        assert [r.path for r in server.requests] == [CHAT_PATH] * 13
        await pool.aclose()
        assert pool.is_closed
        with pytest.raises(RuntimeError, match="closed"):
            await pool.post(url, json=body)


def test_per_client_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ClientPool(timeout=1, per_client=0)


async def test_backends_use_a_pool_unless_given_a_client() -> None:
    # A single httpx client for every request made concurrency 64 cost several ms of CPU a request (httpcore's pool
    # work grows with the square of its connections): keep the backends on the pool.
    assert REQUESTS_PER_CLIENT <= 8
    openai = OpenAICompatModel("m", "http://127.0.0.1:1/v1", api_key=None)
    anthropic = AnthropicModel("claude-test", api_key="k")
    assert isinstance(openai._http, ClientPool) and isinstance(anthropic._http, ClientPool)
    async with httpx.AsyncClient() as shared:
        assert OpenAICompatModel("m", "http://127.0.0.1:1/v1", api_key=None, http=shared)._http is shared
        assert AnthropicModel("claude-test", api_key="k", http=shared)._http is shared
    await openai.aclose()
    await anthropic.aclose()
    assert openai._http.is_closed and anthropic._http.is_closed
