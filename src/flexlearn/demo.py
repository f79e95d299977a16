"""`flex demo`: the whole FLEX loop on a small slice shipped with the package, offline by default.

Learn on a training slice, evaluate a held-out slice in the four modes, and hand back everything a person needs
to see that it worked: the table, the library's composition, a few entries, and where the files are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from flexlearn.engine import Engine, LearnSummary, Mode, Progress
from flexlearn.errors import ConfigError, LibraryError
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.records import ItemRecord, ModeResult
from flexlearn.settings import EvalSettings, LearnSettings
from flexlearn.tasks import Problem, Task, get_task


@dataclass(frozen=True)
class DemoSet:
    """A shipped slice: which task scores it, and the defaults that fit it in the demo's time budget."""

    task: str
    train_size: int
    test_size: int
    # Train and test chosen together, by category: the first training problem of each of the first `train_size`
    # categories of the test slice, and the held-out problems of those categories alone. A short learning phase
    # then teaches lessons that the held-out problems can use (the instruction-model demo, on Formula).
    paired: bool = False


# The Formula demo's sizes: measured with local:qwen2.5-coder-1.5b to finish in about 15 minutes here.
FORMULA_TRAIN = 3
FORMULA_TEST = 5

DEMO_SETS: dict[str, DemoSet] = {
    # Measured on the embedded 270M base model: see docs/local-model-measurements.md.
    "word_facts": DemoSet(task="exact", train_size=24, test_size=30),
    "gsm8k": DemoSet(task="gsm8k", train_size=10, test_size=20),
    # The README's examples: two-number arithmetic, for trying an API model in seconds.
    "arithmetic": DemoSet(task="math", train_size=8, test_size=6),
    # ACE's XBRL Formula (finance formulas), paired by formula; sized for an embedded instruction model: see
    # docs/local-model-measurements.md.
    "formula": DemoSet(task="formula", train_size=FORMULA_TRAIN, test_size=FORMULA_TEST, paired=True),
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
    learn: LearnSettings
    eval: EvalSettings


def plan(
    name: str,
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    rollouts: int | None = None,
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
    train_n, test_n = train_size or demo.train_size, test_size or demo.test_size
    if demo.paired:
        train, test = _paired(task.load(train_path), task.load(test_path), train_n, test_n)
    else:
        train, test = task.load(train_path)[:train_n], task.load(test_path)[:test_n]
    overlap = {p.question for p in train} & {p.question for p in test}
    if overlap:
        raise ConfigError(f"demo slice {name!r} shares {len(overlap)} items between train and test")
    return DemoPlan(
        name=name,
        task=task,
        train=train,
        test=test,
        # Worked examples while exploring are left to the model (explore_shots None: 3 for a base model).
        # rollouts None: the model's default (1 for an embedded instruction model, else 3).
        learn=LearnSettings.of(rollouts=rollouts, rounds=rounds, concurrency=concurrency),
        eval=EvalSettings.of(modes=list(Mode), icl_k=icl_k, agent_rounds=agent_rounds, concurrency=concurrency),
    )


def _paired(
    train: list[Problem], test: list[Problem], train_n: int, test_n: int
) -> tuple[list[Problem], list[Problem]]:
    """`DemoSet.paired`: up to `train_n` categories, in the order the test slice first shows them (those the
    training slice has), the first training problem of each, and up to `test_n` held-out problems of them."""
    first: dict[str, Problem] = {}
    for p in train:
        first.setdefault(p.category, p)
    categories = list(dict.fromkeys(p.category for p in test if p.category in first))[:train_n]
    return [first[c] for c in categories], [p for p in test if p.category in categories][:test_n]


@dataclass
class DemoOutcome:
    summary: LearnSummary
    results: list[ModeResult]


def _finished_learning(library: Library, demo: DemoPlan) -> LearnSummary | None:
    """The summary of a finished learn run of this demo's training problems in `library`, if there is one."""
    ids = [p.id for p in demo.train]
    for run in reversed(library.runs("learn")):
        config = library.run_config(run.run_id) or {}
        if run.status == "done" and config.get("task") == demo.task.name and config.get("problem_ids") == ids:
            return LearnSummary(
                run.run_id, True, run.total, run.total, solved=run.solved, unsolved=run.unsolved, failed=run.failed
            )
    return None


def _unfinished_learning(library: Library, demo: DemoPlan) -> bool:
    """Whether `library` holds an interrupted learn run of this demo's training problems."""
    try:
        library.resumable_run("learn", task=demo.task.name, problem_ids=[p.id for p in demo.train])
    except LibraryError:
        return False
    return True


async def run_demo(
    demo: DemoPlan,
    *,
    agents: Agents,
    library: Library,
    on_learn: Callable[[Progress], None] | None = None,
    on_item: Callable[[ItemRecord], None] | None = None,
    done: Mapping[tuple[str, str, int], ItemRecord] | None = None,
) -> DemoOutcome:
    """Learn, then evaluate. In a library where this demo was interrupted, learning continues its run (or is
    skipped when that run finished) and evaluation takes the items in `done` as they are."""
    engine = Engine.of(demo.task, agents, library, learning=demo.learn, evaluation=demo.eval)
    summary = _finished_learning(library, demo)
    if summary is None:
        summary = await engine.learn(
            demo.train, source=f"demo:{demo.name}", on_progress=on_learn, resume=_unfinished_learning(library, demo)
        )
    elif on_learn is not None:
        on_learn(Progress(summary.total, summary.total, summary.solved, summary.failed, 0))
    results = await engine.evaluate(demo.test, train=demo.train, on_item=on_item, done=done)
    return DemoOutcome(summary, results)
