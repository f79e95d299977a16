"""The public API (`import flexlearn`): the README's "From Python" code run as written against the scripted
model server, guidance and record for a user's own agent, and the blocking functions inside a running loop."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

import flexlearn
from flexlearn.errors import ConfigError
from flexlearn.experience import Action
from flexlearn.models import TestModel
from tests.support.cli import TEST, TRAIN, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def run_block(code: str, server: FakeOpenAI) -> None:
    """Run a README block as a script would, with every model URI pointing at the scripted server."""
    code = re.sub(r'"openai:[^"]+"', repr(model_uri(server)), code)
    exec(compile(code, str(README), "exec"), {"__name__": "__main__"})


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_set(tmp_path / "train.jsonl", TRAIN)
    write_set(tmp_path / "test.jsonl", TEST)
    return tmp_path


def test_public_names() -> None:
    assert set(flexlearn.__all__) >= {
        "Agents",
        "Library",
        "connect",
        "learn",
        "alearn",
        "evaluate",
        "aevaluate",
        "solve",
        "asolve",
        "guidance",
        "record",
        "arecord",
    }
    assert len(flexlearn.__all__) <= 20
    for name in flexlearn.__all__:
        assert getattr(flexlearn, name) is not None
    documented = (README.parent / "docs" / "api.md").read_text(encoding="utf-8")
    for name in flexlearn.__all__:
        assert f"`{name}" in documented, f"{name} is missing from docs/api.md"


def test_readme_from_python_runs(
    workdir: Path, scripted_server: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = readme_python_blocks()
    assert len(blocks) == 2
    run_block(blocks[0], scripted_server)
    printed = capsys.readouterr().out
    # The README runs as written: on the slice shipped with the package, nothing of the test's own.
    shipped = len(flexlearn.tasks.get_task("math").load(flexlearn.demo_data("arithmetic")[0]))
    assert f"explored {shipped} problems, solved {shipped}" in printed
    assert "vanilla: 0%" in printed and "flex: 100%" in printed  # the scripted actor needs experience
    assert "\n64\n" in printed  # solve, with guidance: 23 + 41

    with flexlearn.Library.open(workdir / "math.flexlib", create=False) as lib:
        run_id = lib.latest_run("record")
        assert run_id is not None and lib.run_status(run_id) == "done"
        assert lib.run_config(run_id)["models"]["actor"] == "external"
        events = lib.events(run_id=run_id)
        assert events and all(ev.reason for ev in events)
        added = [lib.get(ev.experience_id) for ev in events if ev.action == Action.ADD and ev.experience_id]
        assert any("8 and 3" in e.content for e in added)
        writer = model_uri(scripted_server)
        assert {(e.provenance.actor, e.provenance.model) for e in added} == {("external", writer)}
        learn_run = lib.latest_run("learn")
        assert learn_run is not None
        assert set(lib.run_config(learn_run)["models"]) == {"actor", "critic", "distiller", "updater"}

    run_block(blocks[1], scripted_server)  # the async form, on the same library
    assert re.search(r"flex 1\.0", capsys.readouterr().out)


def test_guidance_is_what_flex_mode_shows(workdir: Path, scripted_server: FakeOpenAI) -> None:
    model = flexlearn.connect(model_uri(scripted_server))
    with flexlearn.Agents(actor=model) as agents, flexlearn.Library.open("lib.flexlib") as lib:
        flexlearn.learn("train.jsonl", task="math", agents=agents, library=lib, rollouts=2, rounds=3)
        question = "What is the sum of 23 and 41?"
        assert flexlearn.guidance(lib, question, budget_tokens=0) == ""
        text = flexlearn.guidance(lib, question)
        assert text.startswith("Reference material:") and "<experience " in text and "sum" in text
        (result,) = flexlearn.evaluate("test.jsonl", task="math", agents=agents, library=lib, modes="flex")
        item = next(i for i in result.items if i.question == question)
        assert text in item.prompt
        assert flexlearn.guidance(lib, question) == text  # retrieval counters do not change what is retrieved


async def test_blocking_functions_work_inside_a_running_loop(workdir: Path, scripted_server: FakeOpenAI) -> None:
    asyncio.get_running_loop()  # as in a notebook
    agents = flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server)))
    with flexlearn.Library.open("lib.flexlib") as lib:
        summary = flexlearn.learn("train.jsonl", task="math", agents=agents, library=lib, rollouts=2, rounds=3)
        assert summary.solved == len(TRAIN)
        results = flexlearn.evaluate(
            "test.jsonl", task="math", agents=agents, library=lib, modes=["vanilla", flexlearn.Mode.FLEX]
        )
        assert [(r.mode, r.accuracy) for r in results] == [("vanilla", 0.0), ("flex", 1.0)]
        absorbed = flexlearn.record(
            lib, "What is the sum of 5 and 6?", "12", correct=False, answer="11", feedback="off by one", agents=agents
        )
        assert absorbed.actions["add"] >= 1 and not absorbed.solved
        # A blocking call from inside flexlearn's own loop (a progress callback) would deadlock: it is refused.
        with pytest.raises(ConfigError, match="async form"):
            flexlearn.evaluate(
                "test.jsonl",
                task="math",
                agents=agents,
                modes=["vanilla"],
                on_item=lambda item: flexlearn.solve("What is 1 + 1?", task="math", agents=agents),
            )
    agents.close()


async def test_async_functions(workdir: Path, scripted_server: FakeOpenAI) -> None:
    async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
        with flexlearn.Library.open("lib.flexlib") as lib:
            await flexlearn.alearn("train.jsonl", task="math", agents=agents, library=lib, rollouts=2, rounds=3)
            solution = await flexlearn.asolve(
                "What is the product of 8 and 3?", task="math", agents=agents, library=lib
            )
            assert solution.answer == "24" and solution.guidance
            absorbed = await flexlearn.arecord(
                lib, "What is the product of 7 and 3?", "21", correct=True, agents=agents, task="math", actor="my-bot"
            )
            assert absorbed.solved and absorbed.experience_ids
            assert {lib.get(i).provenance.actor for i in absorbed.experience_ids} <= {"my-bot", agents.actor.name}


async def test_record_with_one_model_for_every_role(tmp_path: Path) -> None:
    """`agents` may be one model; the actor and the critic are not called."""
    model = TestModel(values={"zone": "warning", "level": "principle"}, name="fn")
    with flexlearn.Library.open(tmp_path / "lib.flexlib") as lib:
        absorbed = await flexlearn.arecord(lib, "How far is it?", "3", correct=False, agents=model, feedback="no units")
        roles = model.roles()
        assert "distiller" in roles and set(roles) <= {"distiller", "updater"}  # no neighbours yet: no updater
        assert absorbed.actions == {"add": 2, "merge": 0, "discard": 0}  # the principle and the case
        assert {e.provenance.model for e in lib.list()} == {"fn"}


def test_agents_default_every_role_to_the_actor() -> None:
    actor, writer = TestModel(name="a"), TestModel(name="w")
    agents = flexlearn.Agents(actor=actor, distiller=writer)
    assert agents.critic is actor and agents.updater is actor and agents.distiller is writer
    assert agents.models() == {"actor": "a", "critic": "a", "distiller": "w", "updater": "a"}
    assert agents.models("actor") == {"actor": "a"}


def test_a_script_that_connects_exits_without_unclosed_session_warnings(
    tmp_path: Path, scripted_server: FakeOpenAI
) -> None:
    """Issue 26: a script that used `flexlearn.connect(...)` and a blocking call printed aiohttp's "Unclosed client
    session" and "Unclosed connector" at interpreter exit. The sessions are closed at exit."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        "import flexlearn\n"
        f"model = flexlearn.connect({model_uri(scripted_server)!r})\n"
        "solution = flexlearn.solve('What is the sum of 2 and 3?', task='math', agents=model)\n"
        "print(solution.reply[:20])\n"
    )
    proc = subprocess.run([sys.executable, "-W", "default", str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Unclosed" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
