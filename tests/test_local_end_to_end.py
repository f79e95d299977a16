"""The whole loop on the real embedded model (slow): `flex demo` learns 2 problems and evaluates 2 in every mode."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flexlearn.experience import Level, Zone
from flexlearn.library.store import Library

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (flexlearn[local])"
    ),
]


def test_demo_learns_and_evaluates_with_the_embedded_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FLEX_MODEL", "FLEX_PROMPT_KIND")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flexlearn",
            "demo",
            "--train-size",
            "2",
            "--test-size",
            "2",
            "--rollouts",
            "2",
            "--rounds",
            "2",
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert data["model"].startswith("local:") and data["completion_tokens_per_second"] > 0
    assert "Using the embedded local model" in proc.stderr

    results = {r["mode"]: r for r in data["results"]}
    assert set(results) == {"vanilla", "icl", "agent", "flex"}
    assert all(r["n"] == 2 and r["errors"] == 0 for r in results.values())
    assert results["agent"]["calls"] >= results["vanilla"]["calls"]

    # Whatever the tiny model wrote, every training problem left a grounded case, which the updater then added,
    # merged or discarded, and logged with a reason.
    with Library.open(data["library"], create=False) as lib:
        assert lib.count(level=Level.CASE) >= 1
        assert all(e.provenance.model.startswith("local:") for e in lib.list())
        decided = {ev.problem_id for ev in lib.events() if ev.candidate and ev.candidate["level"] == "case"}
        assert len(decided) == 2
        assert all(ev.reason for ev in lib.events())
        assert {e.zone for e in lib.list()} <= {Zone.GOLDEN, Zone.WARNING}
        # Every entry is titled with the kind of question the data names, not the task or a model's guess.
        kinds = {"irregular plural", "irregular past tense", "number in words", "capital city", "chemical symbol"}
        assert {e.title for e in lib.list()} <= kinds

    run_dir = Path(data["library"]).parent / "eval"
    items = [json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines()]
    assert len(items) == 8
    # Base-model prompts end on the answer cue, and the replies were actually generated.
    assert all(item["prompt"].endswith("A:") for item in items)
    assert any(item["reply"].strip() for item in items)


async def test_the_agent_beside_vanilla_answers_as_it_does_alone_on_the_embedded_model() -> None:
    """What lets the agent take vanilla's reply for its first attempt (`ReplyMemo`): the embedded model answers
    the same request the same way, whatever it was asked before. The agent's items, evaluated beside vanilla, are
    the items it makes alone, and the model was asked one attempt less per problem."""
    from flexlearn import connect
    from flexlearn.loop.agents import Agents
    from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
    from flexlearn.models import GenerationOptions, Meter
    from flexlearn.tasks import Problem, get_task

    task = get_task("exact")
    problems = [
        Problem(id="p0", question="What is the capital of France?", answer="Paris"),
        Problem(id="p1", question="What is the plural of mouse?", answer="mice"),
    ]
    config = EvalConfig(actor=GenerationOptions(max_tokens=24), critic=GenerationOptions(max_tokens=48))

    async def run(modes: list[Mode]) -> tuple[dict[str, list], int]:
        meter = Meter()
        agents = Agents.single(connect("local", meter=meter, concurrency=1))
        try:
            results = await evaluate(problems, task=task, modes=modes, agents=agents, config=config)
        finally:
            await agents.aclose()
        actor_calls = int(meter.snapshot()["actor"]["calls"])
        return {r.mode: r.items for r in results}, actor_calls

    alone, alone_calls = await run([Mode.AGENT])
    together, together_calls = await run([Mode.VANILLA, Mode.AGENT])
    fields = ("reply", "correct", "calls", "prompt_tokens", "completion_tokens", "rounds")
    assert [[getattr(i, f) for f in fields] for i in together["agent"]] == [
        [getattr(i, f) for f in fields] for i in alone["agent"]
    ]
    # Beside vanilla the actor was asked vanilla's attempts and the agent's retries: what the agent alone asks.
    assert together_calls == alone_calls
