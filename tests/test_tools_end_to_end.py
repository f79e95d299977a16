"""Tool-using actors over real HTTP: a scripted OpenAI-compatible server writes the Python blocks. Every escape the
sandbox promises to contain is tried from a block; each must come back as an observation and the run complete.
Then the `--tools` flag through the real CLI: eval (items, table, report) and solve."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from flexlearn import connect
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.report.page import render_report
from flexlearn.sandbox import SandboxLimits, sandbox_info
from flexlearn.tasks import get_task
from flexlearn.tasks.base import Problem
from tests.sandbox.conftest import processes_with
from tests.support.cli import flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI, FakeRequest
from tests.support.scripted_flex import parse

SECRET = "sk-tools-secret-7741"
SLEEP = f"4321.{uuid.uuid4().int % 10**6}"


def escapes(port: int, ssh_key: Path) -> list[tuple[str, str]]:
    """(name, code) for each escape, in the order the scripted model tries them."""
    return [
        ("infinite loop", "while True:\n    pass"),
        ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
        ("10 GB", "x = bytearray(10 * 1024**3)\nprint(len(x))"),
        ("1 GB stdout", "import sys\nchunk = 'y' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)"),
        ("~/.ssh", f"print(open({str(ssh_key)!r}).read())\nimport os\nprint(os.listdir(os.path.expanduser('~')))"),
        ("/etc/shadow", "print(open('/etc/shadow').read())"),
        (
            "parent env",
            "import os\nprint(dict(os.environ))\n"
            "for p in [os.getppid(), 1] + [q for q in os.listdir('/proc') if q.isdigit()]:\n"
            "    try:\n        print(open(f'/proc/{p}/environ', 'rb').read())\n    except OSError:\n        pass",
        ),
        (
            "socket",
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('CONNECTED')\nexcept OSError as e:\n    print('blocked', e)",
        ),
        (
            "leftover process",
            "import os\nif os.fork() == 0:\n    os.setsid()\n    fd = os.open('/dev/null', os.O_RDWR)\n"
            "    for n in (0, 1, 2):\n        os.dup2(fd, n)\n"
            f"    os.execv('/bin/sleep', ['sleep', '{SLEEP}'])\nprint('left one running')",
        ),
    ]


class EscapingActor:
    """Plays the actor: one escape block per turn (it counts the outputs it has been shown), then the answer."""

    def __init__(self, blocks: list[str]) -> None:
        self.blocks = blocks

    def __call__(self, request: FakeRequest) -> str:
        messages: list[dict[str, Any]] = request.json["messages"]
        assert "You have a Python tool" in messages[0]["content"]
        shown = sum(m["role"] == "user" and m["content"].startswith("Output") for m in messages)
        if shown < len(self.blocks):
            return f"Let me try this.\n```python\n{self.blocks[shown]}\n```"
        return "Whatever happened, 6 times 7 is 42. Final answer: \\boxed{42}"


async def test_every_escape_is_contained_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519").write_text("PRIVATE-KEY-7741")
    monkeypatch.setenv("FLEX_SECRET", SECRET)
    handler = EscapingActor([])
    with FakeOpenAI(handler) as server:
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        tried = escapes(port, ssh / "id_ed25519")
        handler.blocks = [code for _, code in tried]
        model = connect(model_uri(server), retry=False)
        config = EvalConfig(
            agent_rounds=1, tools=("python",), sandbox=SandboxLimits(wall_seconds=4, cpu_seconds=3), concurrency=1
        )
        problem = Problem(id="p1", question="What is the product of 6 and 7?", answer="42")
        async with Agents(model) as agents:
            [result] = await evaluate(
                [problem], task=get_task("math"), modes=[Mode.AGENT], agents=agents, config=config
            )
        requests = len(server.requests)
    item = result.items[0]
    assert item.error is None and item.correct and item.extracted == "42"  # the run completed
    assert item.tool_calls == len(tried) == result.tool_calls
    assert item.calls == len(tried) + 1 == requests  # no request came from the sandbox
    seen = {name: step.observation for (name, _), step in zip(tried, item.steps, strict=True)}
    # Whichever limit comes first (the CPU's on an idle core, the clock's on a busy machine), the loop is stopped.
    assert (
        "Stopped: the wall-clock limit" in seen["infinite loop"]
        or "Stopped: the CPU-time limit" in seen["infinite loop"]
    )
    assert seen["fork bomb"].startswith("Stopped")
    assert "MemoryError" in seen["10 GB"]
    assert "[output truncated]" in seen["1 GB stdout"] and len(seen["1 GB stdout"]) < 5000
    assert "PRIVATE-KEY-7741" not in seen["~/.ssh"] and "Error" in seen["~/.ssh"]
    assert "root:" not in seen["/etc/shadow"] and "Error" in seen["/etc/shadow"]
    assert SECRET not in seen["parent env"] and "FLEX_SECRET" not in seen["parent env"]
    active = (await asyncio.to_thread(sandbox_info)).active
    if "network_namespace" in active:
        assert seen["socket"].startswith("blocked"), seen["socket"]
    assert seen["leftover process"].startswith("left one running")
    assert processes_with(b"sleep\x00" + SLEEP.encode()) == []
    # Each output reached the model in the prompt after its block.
    assert all(step.observation.splitlines()[0] in item.prompt for step in item.steps)


class CodingActor:
    """Plays the actor with one block that computes the answer, then answers from its output."""

    def __call__(self, request: FakeRequest) -> str:
        messages: list[dict[str, Any]] = request.json["messages"]
        last = messages[-1]["content"]
        if last.startswith("Output:"):
            value = last.splitlines()[1]
            return f"The code printed {value}. Final answer: \\boxed{{{value}}}"
        if "You have a Python tool" not in messages[0]["content"]:
            return "A guess. Final answer: \\boxed{0}"
        problem = parse(last)
        assert problem is not None, last
        kind, a, b = problem
        op = {"sum": "+", "product": "*", "difference": "-"}[kind]
        return f"```python\nprint({a} {op} {b})\n```"


def test_cli_eval_and_solve_with_tools(tmp_path: Path) -> None:
    test = write_set(tmp_path / "test.jsonl", [("sum", 23, 41), ("product", 8, 3)])
    out = tmp_path / "run"
    with FakeOpenAI(CodingActor()) as server:
        bad = flex(
            "eval",
            "--task",
            "math",
            "--test",
            str(test),
            "--model",
            model_uri(server),
            "--tools",
            "python,web",
            check=False,
        )
        assert bad.returncode != 0 and "unknown tool 'web'" in bad.stderr + bad.stdout
        assert server.requests == []  # refused before any model call
        common = ["--task", "math", "--test", str(test), "--model", model_uri(server), "--agent-rounds", "1"]
        shown = flex("eval", *common, "--modes", "vanilla,agent", "--tools", "python", "--out", str(out))
        solved = flex(
            "solve", "What is the sum of 2 and 3?", "--task", "math", "--model", model_uri(server), "--tools", "python"
        )
        as_json = flex(
            "solve",
            "What is the product of 4 and 5?",
            "--task",
            "math",
            "-m",
            model_uri(server),
            "--tools",
            "python",
            "--json",
        )
    assert "tool calls/item" in shown.stdout
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    by_mode = {m: [i for i in items if i["mode"] == m] for m in ("vanilla", "agent")}
    assert all(not i["correct"] and i["tool_calls"] == 0 for i in by_mode["vanilla"])
    assert all(i["correct"] and i["tool_calls"] == 1 and i["calls"] == 2 for i in by_mode["agent"])
    assert by_mode["agent"][0]["steps"][0]["observation"] in {"64", "24"}
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["tools"] == ["python"]
    assert [r["tool_calls"] for r in results["results"]] == [0, 2]
    page = render_report(out)
    assert "Tool steps (1)" in page and "print(23 + 41)" in page
    assert "step 1 (python)" in solved.stdout and "answer: 5" in solved.stdout
    data = json.loads(as_json.stdout)
    assert data["answer"] == "20" and data["tool_calls"] == 1 and data["steps"][0]["observation"] == "20"


def test_tools_need_a_chat_model(tmp_path: Path) -> None:
    test = write_set(tmp_path / "test.jsonl", [("sum", 1, 2)])
    with FakeOpenAI(CodingActor()) as server:
        proc = flex(
            "eval", "--task", "math", "--test", str(test), "--model", model_uri(server), "--prompt-kind", "completion",
            "--modes", "agent", "--tools", "python", check=False,
        )  # fmt: skip
        assert proc.returncode != 0 and "needs a chat model" in proc.stderr + proc.stdout
        assert server.requests == []
