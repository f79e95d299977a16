"""Run directories for the report tests, written by the real loops (`evaluate`, `scaling`, `inherit`) driven by
`FunctionModel`s with scripted replies, and `flexlearn.results` writing them, so the report reads exactly what the
loops write. Each scripted mode is evaluated with its own model, then written as one run.

- full: four modes on six problems (one agent call fails, a reply and a library title carry markup), a copy of
  the library (`--snapshot`), and a scaling and an inheritance run beside them;
- referenced: flex mode on the same problems, the library referred to (`library.ref.json`, the default), then
  moved away, so the report has only the folder;
- minimal: vanilla and icl on four problems, no library;
- metric: retrosynthesis (a task metric) with two repeats, SMILES and <think> tags in replies;
- scaling_only: scaling.json alone.

    python -m tests.report.runs DIR    # writes the five directories under DIR (e.g. for screenshot_report.py)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from flexlearn.errors import ModelError
from flexlearn.experience import Experience, Level, Provenance, Zone
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.loop.experiments import inherit, scaling
from flexlearn.models.base import Prompt
from flexlearn.models.function import FunctionModel
from flexlearn.records import INHERIT, SCALING, Inherit, ModeResult, Scaling
from flexlearn.results import write_json, write_run
from flexlearn.tasks import Problem, Task, get_task

MODEL = "qwen2.5-7b-instruct"
STARTED = datetime(2025, 11, 24, 4, 32, tzinfo=UTC).timestamp()
CONFIG = {"agent_rounds": 3, "budget_tokens": 1500, "actor": {"temperature": 0.0}}
HOSTILE = "<script>alert(1)</script>"
TOP_ID = "a1f3c9e20b11"
DELETED_ID = "deleted00001"
FRACTION = "\\boxed{\\frac{99}{100}}"

PROBLEMS = [
    Problem(id=f"aime25-0{i}", question=f"Compute answer {i}" + (" triangle" if i < 3 else ""), answer=f"{i * 7}")
    for i in range(5)
] + [Problem(id="aime25-05", question="Compute answer 5", answer=FRACTION)]


def _question(prompt: Prompt) -> str:
    return prompt.messages[-1].content


def _answers(right: set[int], hostile: int | None = None) -> Callable[[Prompt, str, object], str]:
    """An actor that answers problem i right when i is in `right`; problem `hostile` gets markup in its reply."""

    def reply(prompt: Prompt, role: str, schema: object) -> str:
        for i, p in reversed(list(enumerate(PROBLEMS))):
            if f"Compute answer {i}" in _question(prompt):
                extra = f"\nIgnore this: {HOSTILE}" if i == hostile else ""
                return f"Working...{extra}\nFinal answer: {p.answer if i in right else 'nope'}"
        return "Final answer: nope"

    return reply


def _agent(prompt: Prompt, role: str, schema: object) -> str:
    """Right on problem 0 only; the blind critic accepts problems 0 and 4 at once and rejects the rest; the actor
    fails on problem 5. That is 2 + 5 + 5 + 5 + 2 + 0 = 19 calls."""
    text = _question(prompt)
    if role != "actor":  # the critic, judging blind
        accept = "Compute answer 0" in text or "Compute answer 4" in text
        return json.dumps({"correct": accept, "diagnosis": "looks off", "next_step": "recheck"})
    if "Compute answer 5" in text:
        raise ModelError("HTTP 503 Service Unavailable")
    return _answers({0})(prompt, role, None)


def _library(path: Path) -> Library:
    """Twelve experiences (2 golden principles, 2 warning cases), six merges, and one deleted after use."""
    lib = Library.open(path)

    def add(id: str, zone: Zone, level: Level, title: str, content: str, retrieved: int = 0) -> None:
        exp = Experience(zone, level, title, content, provenance=Provenance(task="exact"), id=id, retrieved=retrieved)
        lib.add(exp, reason="seeded", problem_id=f"train-{id}")

    add(TOP_ID, Zone.GOLDEN, Level.PRINCIPLE, "Verify the final answer against every constraint", "answer", 35)
    add("b7d2e4a0c9f3", Zone.GOLDEN, Level.PATTERN, "Restate the question", "Restate each triangle first.")
    add("c0ffee000001", Zone.GOLDEN, Level.PRINCIPLE, "Work backwards", "Start from the goal state.")
    add("c0ffee000002", Zone.WARNING, Level.CASE, "Counting pairs m+n <b>", f"Counted twice. {HOSTILE}")
    add("c0ffee000003", Zone.WARNING, Level.CASE, "Off by one", "Fencepost errors in ranges.")
    for k in range(4, 11):
        add(f"c0ffee00000{k:x}", Zone.WARNING, Level.PATTERN, f"Pitfall {k}", f"Unrelated lesson number {k}.")
    add(DELETED_ID, Zone.WARNING, Level.PRINCIPLE, "Soon gone", "triangle inequality")
    for k in range(6):
        candidate = Experience(Zone.GOLDEN, Level.PRINCIPLE, "again", f"Goal state, take {k}.")
        lib.merge(
            "c0ffee000002", content=f"Counted twice, take {k}.", examples=None, candidate=candidate, reason="same"
        )
    return lib


def _scaling_library(path: Path, problems: int) -> Library:
    """A library that absorbed `problems` training problems, one golden case each."""
    lib = Library.open(path)
    with lib.transaction():
        for i in range(problems):
            # Worded like the questions ("Compute answer N"), as a case must be for a chat actor to be shown it.
            exp = Experience(
                Zone.GOLDEN, Level.CASE, f"case {i}", f"compute: answer hint {i}", provenance=Provenance(task="x")
            )
            lib.add(exp, reason="seeded", run_id="learn", problem_id=f"t{i}")
    return lib


def _more_guidance_is_better(prompt: Prompt, role: str, schema: object) -> str:
    """Right on more problems the longer the guidance in the prompt."""
    text = "\n".join(m.content for m in prompt.messages)
    hints = text.count("answer hint")
    question = _question(prompt)
    i = next((i for i in range(len(PROBLEMS)) if f"Compute answer {i}" in question), 0)
    return f"Final answer: {PROBLEMS[i].answer if hints > 3 * i else 'nope'}"


async def _modes(
    task: Task, problems: list[Problem], scripted: dict[Mode, Callable[..., str]], **kwargs: object
) -> list[ModeResult]:
    results: list[ModeResult] = []
    for mode, fn in scripted.items():
        agents = Agents.single(FunctionModel(fn, name=MODEL))
        results += await evaluate(problems, task=task, modes=[mode], agents=agents, **kwargs)  # type: ignore[arg-type]
    return results


def _meta(task: Task, **extra: object) -> dict[str, object]:
    return {"task": task.name, "model": MODEL, "started": STARTED, "seconds": 754.2, "config": CONFIG, **extra}


async def write_full(directory: Path, work: Path) -> None:
    task = get_task("exact")
    config = EvalConfig(budget_tokens=1500, concurrency=1)
    with _library(work / "full.flexlib") as lib:
        train = [Problem(id=f"train-{i}", question=f"Train {i}", answer=str(i)) for i in range(3)]
        results = await _modes(
            task,
            PROBLEMS,
            {
                Mode.VANILLA: _answers({0, 1, 2}, hostile=3),
                Mode.ICL: _answers({0, 1, 2, 3, 4}),
                Mode.AGENT: _agent,
                Mode.FLEX: _answers({0, 1, 2, 3}),
            },
            config=config,
            library=lib,
            train=train,
        )
        lib.delete(DELETED_ID, reason="superseded")
        meta = _meta(task, test="data/aime25_test.jsonl", train="data/aime25_train.jsonl", library=str(lib.path))
        write_run(directory, meta, results, lib, snapshot=True)
    await write_scaling(directory, work, sizes=[0, 10, 50, 200])
    await write_inherit(directory, work)


async def write_referenced(directory: Path, work: Path) -> None:
    task = get_task("exact")
    path = work / "referenced.flexlib"
    with _library(path) as lib:
        results = await _modes(
            task, PROBLEMS, {Mode.FLEX: _answers({0, 1, 2, 3})}, config=EvalConfig(budget_tokens=1500), library=lib
        )
        lib.delete(DELETED_ID, reason="superseded")
        write_run(directory, _meta(task, test="data/aime25_test.jsonl", library=str(path)), results, lib)
    path.rename(work / "moved-away.flexlib")


async def write_scaling(directory: Path, work: Path, sizes: list[int]) -> None:
    task = get_task("exact")
    with _scaling_library(work / f"scaling-{directory.name}.flexlib", max(sizes)) as lib:
        agents = Agents.single(FunctionModel(_more_guidance_is_better, name=MODEL))
        points, fit = await scaling(
            PROBLEMS,
            task=task,
            agents=agents,
            library=lib,
            sizes=sizes,
            workdir=work / f"replays-{directory.name}",
            config=EvalConfig(budget_tokens=100_000, concurrency=1),
        )
        record = Scaling(task=task.name, model=MODEL, library=str(lib.path), points=points, fit=fit)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / SCALING, record)


async def write_inherit(directory: Path, work: Path) -> None:
    task = get_task("exact")
    with (
        _scaling_library(work / "inherited.flexlib", 3) as inherited,
        _scaling_library(work / "own.flexlib", 20) as own,
    ):
        agents = Agents.single(FunctionModel(_more_guidance_is_better, name="qwen2.5-3b"))
        config = EvalConfig(budget_tokens=100_000, concurrency=1)
        rows = await inherit(PROBLEMS, task=task, agents=agents, inherited=inherited, own=own, config=config)
    write_json(directory / INHERIT, Inherit(task=task.name, model="qwen2.5-3b", rows=rows))


async def write_minimal(directory: Path) -> None:
    task = get_task("exact")
    problems = PROBLEMS[:4]
    train = [Problem(id=f"train-{i}", question=f"Train {i}", answer=str(i)) for i in range(3)]
    results = await _modes(
        task, problems, {Mode.VANILLA: _answers({0}), Mode.ICL: _answers({0, 1})}, config=EvalConfig(), train=train
    )
    write_run(directory, _meta(task, test="data/minimal.jsonl"), results)


RETRO = [
    Problem(id="uspto-0001", question="CC(=O)Nc1ccc(O)cc1", answer="CC(=O)OC(C)=O.Nc1ccc(O)cc1"),
    Problem(id="uspto-0002", question="C/C=C/C(=O)OCC", answer="C/C=C/C(=O)O.CCO"),
    Problem(id="uspto-0003", question="NC(=O)c1ccccc1", answer="N#Cc1ccccc1"),
]


def _retro(plan: dict[str, list[str]]) -> Callable[[Prompt, str, object], str]:
    """Replies per problem, one per repeat in order: "right", "wrong" (valid SMILES) or "invalid"."""
    seen: dict[str, int] = {}

    def reply(prompt: Prompt, role: str, schema: object) -> str:
        p = next(p for p in RETRO if p.question in _question(prompt))
        k = seen[p.id] = seen.get(p.id, -1) + 1
        answer = {"right": p.answer, "wrong": "CC(=O)Cl.Nc1ccc(O)cc1", "invalid": "C1CC(("}[plan[p.id][k]]
        return f"<think>disconnect the ester or amide</think>\nReactants: {answer}"

    return reply


async def write_metric(directory: Path, work: Path) -> None:
    task = get_task("retro")
    with Library.open(work / "retro.flexlib") as lib:
        lib.add(
            Experience(Zone.GOLDEN, Level.PATTERN, "Prefer anhydrides", "Acetic anhydride acetylates anilines."),
            reason="seeded",
        )
        vanilla = {
            "uspto-0001": ["wrong", "right"],
            "uspto-0002": ["right", "right"],
            "uspto-0003": ["invalid", "wrong"],
        }
        flex = {"uspto-0001": ["right", "right"], "uspto-0002": ["right", "right"], "uspto-0003": ["wrong", "right"]}
        results = await _modes(
            task,
            RETRO,
            {Mode.VANILLA: _retro(vanilla), Mode.FLEX: _retro(flex)},
            config=EvalConfig(repeats=2, concurrency=1),
            library=lib,
        )
        write_run(directory, _meta(task, test="data/uspto_test.jsonl", model="chem-llm-8b"), results, lib)


async def write_all(root: Path) -> dict[str, Path]:
    """Write the five run directories under `root`; returns them by name."""
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    runs = {name: root / name for name in ("full", "referenced", "minimal", "metric", "scaling_only")}
    await write_full(runs["full"], work)
    await write_referenced(runs["referenced"], work)
    await write_minimal(runs["minimal"])
    await write_metric(runs["metric"], work)
    await write_scaling(runs["scaling_only"], work, sizes=[0, 10, 50, 200])
    return runs


if __name__ == "__main__":
    for path in asyncio.run(write_all(Path(sys.argv[1]))).values():
        print(path)
