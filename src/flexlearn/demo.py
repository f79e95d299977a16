"""`flex demo`: the whole FLEX loop on a small slice shipped with the package, offline by default.

Learn on a training slice, evaluate a held-out slice in the four modes, and hand back everything a person needs
to see that it worked: the table, the library's composition, a few entries, and where the files are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from flexlearn.errors import ConfigError
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.loop.explore import ExploreConfig
from flexlearn.loop.learn import LearnConfig, LearnSummary, Progress, learn
from flexlearn.records import ItemRecord, ModeResult
from flexlearn.tasks import Problem, Task, get_task


@dataclass(frozen=True)
class DemoSet:
    """A shipped slice: which task scores it, and the defaults that fit it in the demo's time budget."""

    task: str
    train_size: int
    test_size: int


DEMO_SETS: dict[str, DemoSet] = {
    # Measured on the embedded 270M base model: see docs/local-model-measurements.md.
    "word_facts": DemoSet(task="exact", train_size=24, test_size=30),
    "gsm8k": DemoSet(task="gsm8k", train_size=10, test_size=20),
}


def demo_data(name: str) -> tuple[Path, Path]:
    """Paths of a shipped slice's train and test files."""
    if name not in DEMO_SETS:
        raise ConfigError(f"unknown demo task {name!r}; choose from {', '.join(DEMO_SETS)}")
    folder = resources.files("flexlearn") / "data" / "demo" / name
    return Path(str(folder / "train.jsonl")), Path(str(folder / "test.jsonl"))


@dataclass
class DemoPlan:
    name: str
    task: Task
    train: list[Problem]
    test: list[Problem]
    learn: LearnConfig
    eval: EvalConfig
    modes: list[Mode] = field(default_factory=lambda: list(Mode))


def plan(
    name: str,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    rollouts: int = 3,
    rounds: int = 2,
    icl_k: int = 3,
    agent_rounds: int = 2,
    concurrency: int = 1,
) -> DemoPlan:
    demo = DEMO_SETS.get(name)
    if demo is None:
        raise ConfigError(f"unknown demo task {name!r}; choose from {', '.join(DEMO_SETS)}")
    task = get_task(demo.task)
    train_path, test_path = demo_data(name)
    train = task.load(train_path)[: train_size or demo.train_size]
    test = task.load(test_path)[: test_size or demo.test_size]
    overlap = {p.question for p in train} & {p.question for p in test}
    if overlap:
        raise ConfigError(f"demo slice {name!r} shares {len(overlap)} items between train and test")
    return DemoPlan(
        name=name,
        task=task,
        train=train,
        test=test,
        learn=LearnConfig(explore=ExploreConfig(rollouts=rollouts, rounds=rounds), concurrency=concurrency),
        eval=EvalConfig(icl_k=icl_k, agent_rounds=agent_rounds, concurrency=concurrency),
    )


@dataclass
class DemoOutcome:
    summary: LearnSummary
    results: list[ModeResult]


async def run_demo(
    demo: DemoPlan,
    *,
    agents: Agents,
    library: Library,
    on_learn: Callable[[Progress], None] | None = None,
    on_item: Callable[[ItemRecord], None] | None = None,
) -> DemoOutcome:
    summary = await learn(
        demo.train,
        task=demo.task,
        agents=agents,
        library=library,
        config=demo.learn,
        source=f"demo:{demo.name}",
        on_progress=on_learn,
    )
    results = await evaluate(
        demo.test,
        task=demo.task,
        modes=demo.modes,
        agents=agents,
        config=demo.eval,
        library=library,
        train=demo.train,
        on_item=on_item,
    )
    return DemoOutcome(summary, results)
