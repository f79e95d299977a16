"""The `--gate CHECK.jsonl` option of the commands that change a library (`learn`, `library import`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flexlearn.cli.output import err, out, progress_bar
from flexlearn.engine import SMALL_CHECK_SET, Engine, Verdict
from flexlearn.errors import ConfigError
from flexlearn.records import ItemRecord
from flexlearn.settings import EvalSettings
from flexlearn.tasks import Problem, Task

GateOpt = Annotated[
    Path | None,
    typer.Option(
        "--gate",
        metavar="CHECK.jsonl",
        help="Keep the new lessons only if they do not make answers worse: answer these problems in flex mode with "
        "the library before and after, and roll the change back when the paired drop's 95% interval excludes "
        f"zero (or, under {SMALL_CHECK_SET} problems, more than one is lost net). Default: no gate.",
        show_default=False,
    ),
]


def load_check(task: Task, path: Path | None) -> list[Problem]:
    """The gate's check problems (none without --gate); ConfigError for an empty file."""
    if path is None:
        return []
    problems = task.load(path)
    if not problems:
        raise ConfigError(f"--gate {path} holds no problems")
    return problems


def gate_engine(engine: Engine, concurrency: int) -> Engine:
    """`engine` with the evaluation's default settings at `concurrency`, as the gate runs its check set."""
    return Engine.of(engine.task, engine.agents, engine.library, evaluation=EvalSettings.of(concurrency=concurrency))


async def run_gate(
    engine: Engine, before: int, check: list[Problem], *, what: str, runs: set[str] | None = None
) -> Verdict:
    """The gate over every change since version `before` of the engine's library, with its evaluation settings
    (see `gate_engine`), and a progress bar."""
    library = engine.library
    assert library is not None
    n = len(check)
    with progress_bar(f"gate: {n} check problems without, then with, the {what}", 2 * n) as bar:
        right = [0, 0]
        done = [0]

        def on_item(item: ItemRecord) -> None:
            right[0 if done[0] < n else 1] += int(bool(item.correct))
            done[0] += 1
            status = f"without {right[0]}/{min(done[0], n)}" + (
                f"  with {right[1]}/{done[0] - n}" if done[0] > n else ""
            )
            bar.update(bar.task_ids[0], completed=done[0], status=status)

        after = library.revision()
        try:
            return await engine.gate(before, check, what=what, runs=runs, on_item=on_item)
        except BaseException:
            err.print(
                f"[yellow]the gate stopped before its verdict[/yellow]: the {escape(what)} was rolled back, not "
                f"kept unchecked; version {after} held it (flex library rollback {escape(library.location)} {after} "
                "brings it back, unchecked)",
                highlight=False,
            )
            raise


def print_verdict(verdict: Verdict) -> None:
    colour = "red" if verdict.rolled_back else "green"
    out.print(f"[{colour}]{verdict.line()}[/{colour}]", highlight=False)
