"""The regression gate, end to end: `flex library import --trust --gate` against the scripted model server rolls a
harmful batch of lessons back and keeps a harmless one, with the figures in the library's log."""

from __future__ import annotations

import json
from pathlib import Path

import flexlearn
from flexlearn.experience import Level
from flexlearn.library.formats import export_json
from flexlearn.library.history import versions
from flexlearn.library.store import Library
from flexlearn.loop.gate import harmful
from tests.library.builders import make
from tests.support.cli import TEST, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI
from tests.support.scripted_flex import HARMFUL

GOOD = "For a sum, product or difference of two numbers, compute it digit by digit and check it."


def export(path: Path, *texts: str) -> Path:
    with Library.open(path.with_suffix(".flexlib")) as lib:
        for text in texts:
            lib.add(make(text, level=Level.PRINCIPLE, title="arithmetic"), reason="r")
        export_json(lib, path)
    return path


def gated_import(library: Path, source: Path, check: Path, server: FakeOpenAI) -> dict:
    proc = flex(
        "library", "import", str(library), str(source), "--trust", "--gate", str(check),
        "--task", "math", "--model", model_uri(server), "--json",
    )  # fmt: skip
    return json.loads(proc.stdout)


def test_a_harmful_batch_is_rolled_back_and_a_harmless_one_kept(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    library, check = tmp_path / "lib.flexlib", write_set(tmp_path / "check.jsonl", TEST)
    flex("library", "import", str(library), str(export(tmp_path / "good.json", GOOD)), "--trust")
    with Library.open(library) as lib:
        kept_before = {e.id for e in lib.list()}

    bad = export(tmp_path / "bad.json", f"For a sum, product or difference, {HARMFUL} before answering.")
    verdict = gated_import(library, bad, check, scripted_server)["gate"]
    assert (verdict["correct_without"], verdict["correct_with"], verdict["n"]) == (3, 0, 3)
    assert verdict["rolled_back"] and verdict["losses"] == 3
    with Library.open(library) as lib:
        assert {e.id for e in lib.list()} == kept_before  # the harmful lesson is gone
        rollback = lib.runs("rollback")[0]
        assert "gate on import" in (lib.run_config(rollback.run_id) or {})["reason"]
        gate_run = lib.runs("gate")[0]
        assert (lib.run_config(gate_run.run_id) or {})["rolled_back"] is True
        assert [v.kind for v in versions(lib)][-2:] == ["import", "rollback"]  # history kept, not erased

    harmless = export(tmp_path / "harmless.json", "For a difference, subtract the second number from the first.")
    verdict = gated_import(library, harmless, check, scripted_server)["gate"]
    assert not verdict["rolled_back"] and verdict["correct_with"] == 3
    with Library.open(library) as lib:
        assert len(lib.list()) == len(kept_before) + 1


def test_absorbed_outcomes_that_hurt_are_rolled_back(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    """The absorber's batch under the gate: an outcome whose lesson is wrong is absorbed, then rolled back."""
    library, check = tmp_path / "lib.flexlib", write_set(tmp_path / "check.jsonl", TEST)
    with Library.open(library) as lib:
        good = lib.add(make(GOOD, level=Level.PATTERN, title="arithmetic"), reason="r")
        flexlearn.record(lib, "What is the sum of 2 and 3?", f"I {HARMFUL}: 5", correct=True, task="math", wait=False)
    proc = flex(
        "library", "queue", str(library), "--absorb", "--gate", str(check), "--task", "math",
        "--model", model_uri(scripted_server), "--json",
    )  # fmt: skip
    shown = json.loads(proc.stdout)
    assert shown["absorbed"] == 1 and shown["absorb"]["actions"]["add"] >= 1
    assert shown["gate"]["rolled_back"] and shown["gate"]["correct_without"] == 3
    with Library.open(library) as lib:
        assert [e.id for e in lib.list()] == [good.id]


def test_the_gate_refuses_quarantined_imports_before_touching_anything(tmp_path: Path) -> None:
    library, check = tmp_path / "lib.flexlib", write_set(tmp_path / "check.jsonl", TEST)
    proc = flex(
        "library", "import", str(library), str(export(tmp_path / "x.json", GOOD)), "--gate", str(check),
        "--task", "math", check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "add --trust" in proc.stderr and not library.exists()


def test_the_rule() -> None:
    small = {"diff": -2 / 30, "ci_low": -0.2, "ci_high": 0.05, "wins": 1, "losses": 3, "n": 30}
    assert harmful(small) is not None  # two lost net on a small set, though the interval includes zero
    assert harmful({**small, "losses": 2}) is None  # one lost net: noise
    large = {"diff": -0.02, "ci_low": -0.04, "ci_high": -0.005, "wins": 10, "losses": 14, "n": 200}
    assert harmful(large) is not None and harmful({**large, "ci_high": 0.01}) is None
    assert harmful({**large, "diff": 0.02, "ci_low": 0.005, "ci_high": 0.04}) is None


async def test_a_gate_stopped_before_its_verdict_rolls_the_batch_back(tmp_path: Path) -> None:
    """Interrupted (here: cancelled) while it answers the check set, the gate does not leave the batch unchecked."""
    import asyncio
    import contextlib

    from flexlearn.loop.agents import Agents
    from flexlearn.loop.gate import gate
    from flexlearn.models import TestModel
    from flexlearn.settings import EvalSettings
    from flexlearn.tasks import Problem, get_task

    class Slow(TestModel):
        async def generate(self, prompt, **kwargs):  # type: ignore[no-untyped-def, override]
            await asyncio.sleep(30)
            return await super().generate(prompt, **kwargs)

    with Library.open(tmp_path / "lib.flexlib") as lib:
        lib.add(make(GOOD, level=Level.PATTERN), reason="r")
        before, kept = lib.revision(), {e.id for e in lib.list()}
        lib.add(make(f"For a sum, {HARMFUL}.", level=Level.PRINCIPLE), reason="the batch")
        check = [Problem(id="c1", question="What is the sum of 2 and 3?", answer="5")]
        config = EvalSettings.of(modes="flex").config()
        running = asyncio.create_task(
            gate(lib, before, check, task=get_task("math"), agents=Agents(Slow()), config=config, what="test batch")
        )
        await asyncio.sleep(0.5)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        assert {e.id for e in lib.list()} == kept
        [rolled] = lib.runs("rollback")
        assert "stopped before its verdict" in (lib.run_config(rolled.run_id) or {})["reason"]


async def test_a_rollback_keeps_what_another_writer_added_while_the_check_ran(
    tmp_path: Path, scripted_server: FakeOpenAI
) -> None:
    """The gate undoes its batch alone: a lesson another writer adds while the check set is answered stays."""
    from flexlearn.engine import Engine
    from flexlearn.tasks import get_task

    check = get_task("math").load(write_set(tmp_path / "check.jsonl", TEST))
    async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
        with Library.open(tmp_path / "lib.flexlib") as lib:
            kept = lib.add(make(GOOD, level=Level.PRINCIPLE, title="arithmetic"), reason="r").id
            before = lib.revision()
            lib.begin_run("batch", kind="import", config={})
            bad = f"For a sum, product or difference, {HARMFUL} before answering."
            harmful_id = lib.add(make(bad, level=Level.PRINCIPLE, title="arithmetic"), reason="b", run_id="batch").id
            meanwhile: list[str] = []

            def another_writer(item: object) -> None:
                if not meanwhile:
                    meanwhile.append(lib.add(make("Write the units of the answer."), reason="someone else").id)

            verdict = await Engine.of("math", agents, lib).gate(
                before, check, what="import", runs={"batch"}, on_item=another_writer
            )
            assert verdict.rolled_back and verdict.correct_with < verdict.correct_without
            ids = {e.id for e in lib.list()}
            assert harmful_id not in ids and kept in ids and meanwhile[0] in ids


def test_a_learn_run_stopped_in_its_gate_resumes_into_the_gate(tmp_path: Path) -> None:
    """SIGTERM while `flex learn --gate` answers its check set: the lessons are rolled back (never kept unchecked)
    and the run is marked `gate-stopped`; `--resume --gate` learns nothing again, brings the lessons back and
    judges them; `--resume` without the gate is refused, saying why."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    from flexlearn.library.history import state_at
    from tests.support.cli import TRAIN
    from tests.support.scripted_flex import ScriptedFlex

    scripted, gating = ScriptedFlex(), threading.Event()

    def handler(request):  # type: ignore[no-untyped-def]
        if "23 and 41" in json.dumps(request.json):  # a check question: the gate is running
            gating.set()
            time.sleep(0.5)
        return scripted(request)

    train, check = write_set(tmp_path / "train.jsonl", TRAIN[:3]), write_set(tmp_path / "check.jsonl", TEST)
    library = tmp_path / "lib.flexlib"
    with FakeOpenAI(handler) as server:
        args = ["learn", "--task", "math", "--train", str(train), "--library", str(library)]
        args += ["--model", model_uri(server), "--concurrency", "1"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "flexlearn", *args, "--gate", str(check)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert gating.wait(120), "the gate never started"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, stderr
        assert "the gate stopped before its verdict" in " ".join(stderr.split()) and "--resume" in stderr
        with Library.open(library, read_only=True) as lib:
            [run] = lib.runs("learn")
            assert run.status == "gate-stopped" and run.solved + run.unsolved == 3
            [stopped] = lib.runs("gate")
            config = lib.run_config(stopped.run_id) or {}
            learned = set(state_at(lib, config["after"]))
            assert learned and not {e.id for e in lib.list()} & learned  # rolled back
        listed = flex("library", "runs", str(library)).stdout
        assert "gate-stopped" in listed

        refused = flex(*args, "--resume", check=False)
        assert refused.returncode == 2 and "resume with --gate" in " ".join(refused.stderr.split()), refused.stderr

        asked = len(scripted.roles)
        resumed = flex(*args, "--resume", "--gate", str(check), "--json")
        data = json.loads(resumed.stdout)
        assert data["summary"]["resumed"] and data["gate"] is not None and not data["gate"]["rolled_back"]
        assert set(scripted.roles[asked:]) == {"actor"}  # the check set only: nothing learned twice
        with Library.open(library, read_only=True) as lib:
            assert {e.id for e in lib.list()} == learned
            assert [r.status for r in lib.runs("learn")] == ["done"]
            assert [r.status for r in lib.runs("gate")] == ["resumed", "done"]
        again = flex(*args, "--resume", "--gate", str(check), check=False)
        assert again.returncode == 2 and "nothing to resume" in again.stderr
