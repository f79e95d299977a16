"""ClientPool: the HTTP backends' own client (an aiohttp session), and the httpx client a user may pass instead."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import pytest

from flexlearn.models import AnthropicModel
from flexlearn.models.http import ClientPool
from flexlearn.models.openai_compat import OpenAICompatModel
from tests.support.fake_openai import CHAT_PATH, FakeOpenAI, FakeRequest, FakeResponse


def slow(request: FakeRequest) -> FakeResponse:
    return FakeResponse(delay=0.2, reply="ok")


async def test_requests_in_flight_share_one_session_and_reuse_its_connections() -> None:
    with FakeOpenAI(slow) as server:
        pool = ClientPool(timeout=10)
        url = server.base_url + "/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}]}
        replies = await asyncio.gather(*(pool.post(url, json=body) for _ in range(10)))
        assert [r.status_code for r in replies] == [200] * 10
        assert all(r.json()["choices"] and "chat.completion" in r.text for r in replies)
        for _ in range(3):
            assert (await pool.post(url, content=b'{"messages": []}')).status_code == 200
        assert [r.path for r in server.requests] == [CHAT_PATH] * 13
        assert server.requests[-1].json == {"messages": []}
        await pool.aclose()
        assert pool.is_closed
        with pytest.raises(RuntimeError, match="closed"):
            await pool.post(url, json=body)


def test_a_pool_used_from_a_second_event_loop_opens_a_session_there() -> None:
    with FakeOpenAI(slow) as server:
        pool = ClientPool(timeout=10)
        url = server.base_url + "/chat/completions"
        for _ in range(2):  # two asyncio.run calls, as two CLI phases would make
            assert asyncio.run(pool.post(url, json={"messages": []})).status_code == 200

        async def close() -> None:
            await pool.aclose()

        asyncio.run(close())
        assert pool.is_closed


async def test_backends_use_the_pool_unless_given_a_client() -> None:
    openai = OpenAICompatModel("m", "http://127.0.0.1:1/v1", api_key=None)
    anthropic = AnthropicModel("claude-test", api_key="k")
    assert isinstance(openai._http, ClientPool) and isinstance(anthropic._http, ClientPool)
    async with httpx.AsyncClient() as shared:
        assert OpenAICompatModel("m", "http://127.0.0.1:1/v1", api_key=None, http=shared)._http is shared
        assert AnthropicModel("claude-test", api_key="k", http=shared)._http is shared
    await openai.aclose()
    await anthropic.aclose()
    assert openai._http.is_closed and anthropic._http.is_closed


async def test_the_proxy_of_the_environment_is_used_unless_the_host_is_exempt(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI(slow) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.rsplit("/v1", 1)[0])
        monkeypatch.setenv("NO_PROXY", "exempt.invalid")
        pool = ClientPool(timeout=5)
        # The proxy receives the request for a host that does not exist (and answers it: no route for a full URL).
        reply = await pool.post("http://api.invalid/v1/chat/completions", json={"messages": []})
        assert reply.status_code == 404 and len(proxy.requests) == 1
        # An exempt host is asked directly, and so cannot be reached.
        with pytest.raises(aiohttp.ClientConnectionError):
            await pool.post("http://exempt.invalid/v1/chat/completions", json={"messages": []})
        assert len(proxy.requests) == 1
        await pool.aclose()
