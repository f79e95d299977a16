"""One mode against every other on the same problems: the paired difference in accuracy, with a bootstrap 95%
interval over problems (`stats.paired`), as `flex eval` prints it after its table. Per-mode intervals overlap
where the paired one does not: the same problem answered by both modes is what the comparison is about. And each
mode's accuracy per kind of problem, where the data names kinds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flexlearn.loop.stats import paired
from flexlearn.records import ModeResult


def against_others(results: Sequence[ModeResult], mode: str = "flex", *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """`mode` minus each other mode in `results`, on the problems both answered: other -> `paired`'s figures
    (diff, ci_low, ci_high, wins, losses, n). A problem counts by the share of its samples that were right, so
    repeats pair too. Empty when `mode` was not run or was run alone."""
    scores = {r.mode: _by_problem(r) for r in results}
    ours = scores.get(mode)
    if ours is None:
        return {}
    out = {}
    for other, theirs in scores.items():
        if other == mode:
            continue
        both = [p for p in ours if p in theirs]
        out[other] = paired([ours[p] for p in both], [theirs[p] for p in both], seed=seed)
    return out


def _by_problem(result: ModeResult) -> dict[str, float]:
    """Problem id -> the share of its samples that were right, in the order the items came."""
    samples: dict[str, list[bool]] = {}
    for item in result.items:
        samples.setdefault(item.problem_id, []).append(item.correct)
    return {p: sum(v) / len(v) for p, v in samples.items()}


def by_category(results: Sequence[ModeResult]) -> dict[str, dict[str, list[int]]]:
    """Category -> {mode: [right samples, samples]}, categories sorted; empty when no item carries a category
    (`ItemRecord.category`, the data's kind of problem)."""
    table: dict[str, dict[str, list[int]]] = {}
    for result in results:
        for item in result.items:
            if item.category:
                row = table.setdefault(item.category, {}).setdefault(result.mode, [0, 0])
                row[0] += int(item.correct)
                row[1] += 1
    return dict(sorted(table.items()))
