"""The engine (`flexlearn.engine.Engine`): one setup built once runs learn, evaluate, solve, guidance, record and
the gate against the scripted model server; the public functions and the CLI are its callers (the CLI imports
no `flexlearn.loop` module)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flexlearn
from flexlearn.engine import Engine, Mode, Verdict
from flexlearn.errors import ConfigError
from flexlearn.settings import EvalSettings, LearnSettings, SolveSettings
from flexlearn.tasks import get_task
from tests.support.cli import TEST, TRAIN, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI

SRC = Path(flexlearn.__file__).resolve().parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_cli_and_the_demo_import_no_loop_internals() -> None:
    for path in [*sorted((SRC / "cli").glob("*.py")), SRC / "demo.py", SRC / "mcp_server.py"]:
        imported = _imports(path)
        # `Agents` is public (`flexlearn.Agents`); the demo and the server import it where it lives, the package
        # itself importing them.
        internal = sorted(m for m in imported if m.startswith("flexlearn.loop") and m != "flexlearn.loop.agents")
        if path.name == "mcp_server.py":  # the background absorber of the server's own loop
            internal.remove("flexlearn.loop.absorber")
        assert not internal, f"{path.relative_to(SRC)} imports {internal}: go through flexlearn.engine"
        assert "flexlearn._api" not in imported, f"{path.relative_to(SRC)}: import the functions from flexlearn"


def test_the_public_functions_run_on_an_engine() -> None:
    # Each blocking function's coroutine builds an Engine: no second implementation of a step to drift apart.
    source = (SRC / "_api.py").read_text(encoding="utf-8")
    for name in ("alearn", "aevaluate", "asolve", "arecord"):
        body = source.split(f"async def {name}(", 1)[1].split("\ndef ", 1)[0].split("\nasync def ", 1)[0]
        assert "Engine.of(" in body, f"{name} does not run on the engine"


@pytest.fixture()
def sets(tmp_path: Path) -> tuple[Path, Path]:
    return write_set(tmp_path / "train.jsonl", TRAIN), write_set(tmp_path / "test.jsonl", TEST)


async def test_one_engine_learns_evaluates_solves_and_records(
    tmp_path: Path, sets: tuple[Path, Path], scripted_server: FakeOpenAI
) -> None:
    train, test = sets
    model = flexlearn.connect(model_uri(scripted_server))
    async with flexlearn.Agents(actor=model) as agents:
        with flexlearn.Library.open(tmp_path / "lib.flexlib") as lib:
            engine = Engine.of(
                "math",
                agents,
                lib,
                learning=LearnSettings(rollouts=2, rounds=3),
                evaluation=EvalSettings.of(modes="vanilla,flex"),
                solving=SolveSettings(guide_at="prompt"),
            )
            summary = await engine.learn(train)
            assert summary.solved == len(TRAIN) and lib.count() > 0
            assert lib.run_config(summary.run_id)["source"] == str(train)
            results = await engine.evaluate(test)
            assert [(r.mode, r.accuracy) for r in results] == [("vanilla", 0.0), ("flex", 1.0)]
            solution = await engine.solve("What is the product of 8 and 3?", answer="24")
            assert solution.answer == "24" and solution.correct and solution.guidance
            # guidance is what flex mode shows this actor, from the same settings
            shown = engine.guidance("What is the product of 8 and 3?")
            assert shown.ids and "<experience " in shown
            before = lib.count()
            absorbed = await engine.record(engine.outcome("What is 9 times 3?", "28", correct=False, answer="27"))
            assert absorbed.actions["add"] + absorbed.actions["merge"] >= 1
            assert lib.count() >= before
            queued = await engine.record(engine.outcome("What is 2 times 2?", "4", correct=True), wait=False)
            assert lib.outcome(queued.id).status == "queued"
            drained = await engine.absorb()
            assert drained.absorbed == 1 and lib.outcome(queued.id).status == "absorbed"


async def test_the_gate_runs_on_the_engine_and_keeps_a_harmless_batch(
    tmp_path: Path, sets: tuple[Path, Path], scripted_server: FakeOpenAI
) -> None:
    train, test = sets
    async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
        with flexlearn.Library.open(tmp_path / "lib.flexlib") as lib:
            engine = Engine.of("math", agents, lib, learning=LearnSettings(rollouts=2, rounds=3))
            before = lib.revision()
            await engine.learn(train)
            verdict = await engine.gate(before, test, what="the learn run")
            assert isinstance(verdict, Verdict)
            assert not verdict.rolled_back and verdict.correct_with >= verdict.correct_without
            assert lib.revision() > before and lib.count() > 0


def test_an_engine_says_what_an_operation_lacks(tmp_path: Path) -> None:
    engine = Engine.of(None, flexlearn.models.TestModel(name="t"))
    with pytest.raises(ConfigError, match="loading problems needs a task"):
        engine.problems("train.jsonl")
    with pytest.raises(ConfigError, match="guidance needs an experience library"):
        engine.guidance("q")
    with flexlearn.Library.open(tmp_path / "lib.flexlib") as lib:
        math = Engine.of(get_task("math"), flexlearn.models.TestModel(name="t"), lib)
        math.check([Mode.FLEX], train=False)
        with pytest.raises(ConfigError, match="icl"):
            math.check([Mode.ICL], train=False)
        assert Engine.of("math", flexlearn.models.TestModel(name="t")).modes(train=True) == [
            Mode.VANILLA,
            Mode.ICL,
            Mode.AGENT,
        ]
        assert math.modes(train=False) == [Mode.VANILLA, Mode.AGENT, Mode.FLEX]
