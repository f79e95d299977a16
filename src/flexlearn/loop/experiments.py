"""The paper's two claims beyond the table, as runnable experiments.

- Scaling law of experience: replay a library to a series of sizes (training problems absorbed), evaluate each in
  flex mode on one test set, and fit accuracy = a + b ln(1 + size).
- Experience inheritance: a model M2 evaluated without a library, with a library learned by another model M1, and
  with a library of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from flexlearn.errors import ConfigError
from flexlearn.library.replay import absorbed, replay
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.records import Fit, InheritRow, ItemRecord, ModeResult, ScalingPoint
from flexlearn.tasks.base import Problem, Task


def parse_sizes(text: str, available: int) -> list[int]:
    """ "0,5,10,all" -> sorted distinct sizes, capped at what the library absorbed."""
    sizes: set[int] = set()
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            sizes.add(available)
            continue
        try:
            value = int(part)
        except ValueError:
            raise ConfigError(f"bad size {part!r} in --sizes; use numbers and 'all', e.g. 0,5,10,20,all") from None
        if value < 0:
            raise ConfigError(f"sizes are counts of training problems, not {value}")
        sizes.add(min(value, available))
    if not sizes:
        raise ConfigError("no sizes given; e.g. --sizes 0,5,10,20,all")
    return sorted(sizes)


def fit_log_linear(sizes: Sequence[int], values: Sequence[float]) -> Fit | None:
    if len(sizes) < 2:
        return None
    xs = [math.log1p(s) for s in sizes]
    mx, my = sum(xs) / len(xs), sum(values) / len(values)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in values)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, values, strict=True))
    return Fit(intercept=intercept, slope=slope, r2=1 - ss_res / ss_tot if ss_tot else 1.0)


def headline(result: ModeResult) -> tuple[float, float | None, float | None]:
    """The number a point or row reports: the task's own metric when it has one, else accuracy."""
    if result.metric is not None:
        return result.metric.value, result.metric.ci_low, result.metric.ci_high
    return result.accuracy, result.ci_low, result.ci_high


async def scaling(
    problems: Sequence[Problem],
    *,
    task: Task,
    agents: Agents,
    library: Library,
    sizes: Sequence[int],
    workdir: Path,
    config: EvalConfig,
    on_item: Callable[[ItemRecord], None] | None = None,
    on_point: Callable[[ScalingPoint], None] | None = None,
) -> tuple[list[ScalingPoint], Fit | None]:
    """Evaluate flex mode with the library replayed to each size. Replays are written to `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    points = []
    for size in sizes:
        path = workdir / f"size-{size}.flexlib"
        for stale in workdir.glob(f"size-{size}.flexlib*"):
            stale.unlink()  # a replay is derived data: rebuild it rather than trust a leftover
        with Library.open(path) as replayed:
            replay(library, replayed, problems=size)
            [result] = await evaluate(
                problems, task=task, modes=[Mode.FLEX], agents=agents, config=config, library=replayed, on_item=on_item
            )
            value, low, high = headline(result)
            point = ScalingPoint(
                size=size,
                experiences=replayed.count(),
                accuracy=value,
                ci_low=low,
                ci_high=high,
                n=result.n,
                result=result,
            )
        points.append(point)
        if on_point:
            on_point(point)
    return points, fit_log_linear([p.size for p in points], [p.accuracy for p in points])


def available_sizes(library: Library) -> int:
    return len(absorbed(library))


def inherit_row(label: str, library: str | None, result: ModeResult) -> InheritRow:
    """The row an inheritance setting reports, its headline number taken from `result`."""
    value, low, high = headline(result)
    return InheritRow(label=label, library=library, accuracy=value, ci_low=low, ci_high=high, n=result.n, result=result)


async def inherit(
    problems: Sequence[Problem],
    *,
    task: Task,
    agents: Agents,
    inherited: Library,
    own: Library | None,
    config: EvalConfig,
    on_item: Callable[[ItemRecord], None] | None = None,
) -> list[InheritRow]:
    """M2 vanilla, M2 + the inherited library, and M2 + its own library (when there is one)."""
    model = agents.actor.name
    rows = []
    [vanilla] = await evaluate(problems, task=task, modes=[Mode.VANILLA], agents=agents, config=config, on_item=on_item)
    rows.append(inherit_row(f"{model} vanilla", None, vanilla))
    [borrowed] = await evaluate(
        problems, task=task, modes=[Mode.FLEX], agents=agents, config=config, library=inherited, on_item=on_item
    )
    rows.append(inherit_row(f"{model} + inherited library", inherited.location, borrowed))
    if own is not None:
        [mine] = await evaluate(
            problems, task=task, modes=[Mode.FLEX], agents=agents, config=config, library=own, on_item=on_item
        )
        rows.append(inherit_row(f"{model} + own library", own.location, mine))
    return rows
