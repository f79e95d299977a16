"""`flex mcp`: the library served over MCP, driven through the SDK's own clients against the real command in a
subprocess, over stdio and over streamable HTTP with a bearer token."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner

import flexlearn
from flexlearn.cli import app
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.formats import import_file
from flexlearn.library.store import Library
from tests.support.cli import flex, model_uri
from tests.support.fake_openai import FakeOpenAI

QUESTION = "What is the sum of 23 and 41?"
CANARY = "CANARY-7"
TOKEN = "test-token-0123456789"


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    """A library with one learned lesson about sums, and an imported one about sums waiting in quarantine."""
    path = tmp_path / "lib.flexlib"
    with Library.open(path) as lib:
        content = "To find the sum of two numbers, add them digit by digit."
        lesson = Experience(Zone.GOLDEN, Level.PATTERN, "sum", content)
        lib.add(lesson, reason="seeded")
        shared = tmp_path / "shared.json"
        hostile = {"id": "Q1", "zone": "golden", "level": "pattern", "title": "sum", "content": f"Sum: {CANARY}."}
        shared.write_text(json.dumps({"format": "flexlearn.library", "version": 1, "experiences": [hostile]}))
        assert import_file(lib, shared).quarantined == 1
    return path


def seeded(path: Path) -> Experience:
    with Library.open(path, read_only=True) as lib:
        return next(e for e in lib.list() if e.provenance.source == "learned")


def stdio(path: Path, *args: str, errlog: Any = None) -> Client:
    """An SDK client that starts `flex mcp --library PATH ARGS` and talks to it over its stdin and stdout."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FLEX_MCP_TOKEN", None)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "flexlearn", "mcp", "--library", str(path), *args], env=env
    )
    return Client(stdio_client(params, errlog=errlog or sys.stderr))


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def call(client: Client, name: str, **arguments: Any) -> Any:
    """A tool's structured result; a tool error fails the test with its message."""
    result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def test_stdio_serves_search_guidance_stats_and_entries(library: Path) -> None:
    lesson = seeded(library)
    async with stdio(library) as client:
        assert await tool_names(client) == {"search", "guidance", "stats"}  # no --model: nothing to record with
        assert client.instructions is not None and "does not record" in client.instructions

        found = (await call(client, "search", query="sum of two numbers"))["result"]
        assert [e["id"] for e in found] == [lesson.id]  # the quarantined entry matches too, and is never shown
        assert found[0] == {
            "id": lesson.id,
            "zone": "golden",
            "level": "pattern",
            "title": "sum",
            "content": lesson.content,
            "examples": [],
        }
        assert (await call(client, "search", query="sum of two numbers", zone="warning"))["result"] == []
        bad = await client.call_tool("search", {"query": "sum", "level": "chapter"})
        assert bad.is_error and "'principle', 'pattern' or 'case'" in bad.content[0].text  # type: ignore[union-attr]

        guidance = await call(client, "guidance", question=QUESTION)
        assert "add them digit by digit" in guidance["text"] and CANARY not in guidance["text"]
        assert guidance["ids"] == [lesson.id] and guidance["lessons"] == ""
        review = await call(client, "guidance", question=QUESTION, guide_at="review")
        assert "add them digit by digit" in review["lessons"]
        assert (await call(client, "guidance", question=QUESTION, budget_tokens=0))["text"] == ""

        stats = await call(client, "stats")
        assert stats["total"] == 2 and stats["quarantined"] == 1

        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["experience://{id}"]
        read = await client.read_resource(f"experience://{lesson.id}")
        entry = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert entry["content"] == lesson.content and entry["provenance"]["source"] == "learned"
        with pytest.raises(MCPError, match="no active experience with id 'Q1'"):
            await client.read_resource("experience://Q1")
    assert seeded(library).retrieved == 2  # guidance counts what it showed (not the empty one)


async def absorbed(client: Client, n: int) -> dict[str, Any]:
    """The stats tool's counts once the server's background absorber has absorbed `n` outcomes."""
    deadline = time.monotonic() + 60
    while True:
        stats = await call(client, "stats")
        if stats["queue"]["absorbed"] >= n:
            return stats
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.05)


async def test_record_queues_and_the_server_learns_in_the_background(
    library: Path, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    lesson = seeded(library)
    # Recorded while no server ran: absorbed when the next one starts.
    with Library.open(library) as lib:
        earlier = flexlearn.record(lib, "What is the product of 6 and 7?", "43", correct=False, wait=False)
    errlog = tmp_path / "server-stderr.txt"
    model = ("--model", model_uri(scripted_server), "--task", "math")
    with errlog.open("w") as stderr:
        async with stdio(library, *model, errlog=stderr) as client:
            assert await tool_names(client) == {"search", "guidance", "stats", "record"}
            assert client.instructions is not None and "in the background" in client.instructions
            shown = await call(client, "guidance", question=QUESTION)
            scripted_server.scripted.delay = 0.5  # type: ignore[attr-defined]  # record does not wait for the model
            started = time.monotonic()
            recorded = await call(
                client,
                "record",
                question=QUESTION,
                attempt="A quick guess: 65.",
                correct=False,
                answer="64",
                feedback="off by one",
                guidance_ids=shown["ids"],
            )
            assert time.monotonic() - started < 0.5 and recorded["queued"] is True
            scripted_server.scripted.delay = 0.0  # type: ignore[attr-defined]
            stats = await absorbed(client, 2)
            assert stats["queue"] == {"queued": 0, "absorbed": 2, "failed": 0}
            found = (await call(client, "search", query="guessed sum of 23 and 41", zone="warning"))["result"]
    logged = errlog.read_text()
    assert "Traceback" not in logged and "Unclosed" not in logged, logged  # the models were closed at the end
    assert "1 outcomes queued from before" in logged
    roles = set(scripted_server.scripted.roles)  # type: ignore[attr-defined]
    assert "distiller" in roles and roles <= {"distiller", "updater"}  # the client's agent was the actor
    with Library.open(library, read_only=True) as lib:
        outcome = lib.outcome(recorded["id"])
        assert outcome is not None and outcome.status == "absorbed" and outcome.result is not None
        learned = outcome.result["experience_ids"]
        assert learned and {e["id"] for e in found} & set(learned)
        assert lib.get(lesson.id).hurt == 1  # shown, and the attempt was wrong
        assert lib.run_config(outcome.outcome.run_id)["task"] == "math"
        assert all(lib.get(i).provenance.actor == "external" for i in learned)
        assert lib.outcome(earlier.id).status == "absorbed"  # type: ignore[union-attr]


async def test_review_quarantines_what_clients_teach(library: Path, scripted_server: FakeOpenAI) -> None:
    lesson = seeded(library)
    async with stdio(library, "--model", model_uri(scripted_server), "--review") as client:
        recorded = await call(client, "record", question=QUESTION, attempt="A quick guess: 65.", correct=False)
        stats = await absorbed(client, 1)
        assert stats["quarantined"] > 1  # the imported entry, and what the client taught
        found = (await call(client, "search", query="guessed sum of 23 and 41", zone="warning"))["result"]
        assert found == []  # waiting for review: never served
    with Library.open(library, read_only=True) as lib:
        outcome = lib.outcome(recorded["id"])
        assert outcome is not None and outcome.result is not None
        waiting = {e.id for e in lib.quarantined()}
        assert set(outcome.result["experience_ids"]) <= waiting
        assert lib.get(lesson.id).content == lesson.content  # nothing merged into a served entry
    listed = flex("library", "review", str(library))
    assert f"{len(waiting)} entries in quarantine" in listed.stdout


async def test_read_only_offers_no_record_and_writes_nothing(library: Path) -> None:
    before = library.read_bytes()
    async with stdio(library, "--read-only") as client:
        assert await tool_names(client) == {"search", "guidance", "stats"}
        assert "add them" in (await call(client, "guidance", question=QUESTION))["text"]
    assert library.read_bytes() == before and seeded(library).retrieved == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(path: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`flex mcp --transport http` on a free loopback port, its URL once it accepts connections."""
    port = free_port()
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FLEX_MCP_TOKEN", None)
    command = [sys.executable, "-m", "flexlearn", "mcp", "--library", str(path), "--transport", "http"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the server did not start listening"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


async def test_http_needs_the_bearer_token(library: Path) -> None:
    lesson = seeded(library)
    with http_server(library, "--token", TOKEN) as (url, proc):
        client_info = {"name": "t", "version": "1"}
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client_info}
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
        accept = {"Accept": "application/json, text/event-stream"}
        for refused in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            assert httpx.post(url, json=initialize, headers={**accept, **refused}).status_code == 401

        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            assert await tool_names(client) == {"search", "guidance", "stats"}
            assert [e["id"] for e in (await call(client, "search", query="sum of two numbers"))["result"]] == [
                lesson.id
            ]
            assert CANARY not in (await call(client, "guidance", question=QUESTION))["text"]
            entry = (await client.read_resource(f"experience://{lesson.id}")).contents[0]
            assert lesson.content in entry.text  # type: ignore[union-attr]

        proc.send_signal(signal.SIGTERM)  # a server is stopped, not finished: one line, no traceback
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert "bearer token required" in stderr and "terminated (SIGTERM)" in stderr


def test_http_on_a_non_loopback_address_needs_a_token(library: Path) -> None:
    refused = flex("mcp", "--library", str(library), "--transport", "http", "--host", "0.0.0.0", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error: --host 0.0.0.0 is not a loopback address")
    assert "Traceback" not in refused.stderr and len(" ".join(refused.stderr.split())) < 160


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--transport", "sse"), "unknown transport 'sse'"),
        (("--read-only", "--model", "openai:m@http://127.0.0.1:9/v1"), "--read-only leaves out"),
        (("--review",), "--review is for what the record tool learns, which needs a --model"),
        (("--retriever", "grep"), "unknown retriever 'grep'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(library: Path, args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(app, ["mcp", "--library", str(library), *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and message in result.output, result.output


async def test_gate_rolls_back_what_a_client_taught_when_it_hurts(
    library: Path, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    """`--gate`: each batch the background absorber applies is checked, and a harmful one rolled back."""
    from tests.support.cli import write_set
    from tests.support.scripted_flex import HARMFUL

    check = write_set(tmp_path / "check.jsonl", [("sum", 23, 41), ("sum", 12, 30), ("sum", 25, 17)])
    errlog = tmp_path / "server-stderr.txt"
    args = ("--model", model_uri(scripted_server), "--task", "math", "--gate", str(check))
    with errlog.open("w") as stderr:
        async with stdio(library, *args, errlog=stderr) as client:
            await call(
                client, "record", question="What is the sum of 2 and 3?", attempt=f"I {HARMFUL}: 5", correct=True
            )
            await absorbed(client, 1)
            deadline = time.monotonic() + 60
            while "gate on 3 check problems" not in errlog.read_text():
                assert time.monotonic() < deadline, errlog.read_text()
                await asyncio.sleep(0.1)
    assert "3/3 without the batch, 0/3 with it" in errlog.read_text()
    with Library.open(library, read_only=True) as lib:
        assert not any(HARMFUL in e.content for e in lib.list())  # rolled back
        assert lib.runs("gate") and lib.runs("rollback")
