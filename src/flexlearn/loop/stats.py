"""Accuracy and other metrics with confidence intervals."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: well behaved at 0%, 100% and small n, unlike the normal
    approximation."""
    if n == 0:
        return (0.0, 0.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap(
    groups: Sequence[T],
    statistic: Callable[[Sequence[T]], float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `groups` resampled with replacement.

    Resample whole problems (a group holds all of one problem's samples), not single samples: repeated samples of
    one problem are correlated, and resampling them apart would make the interval too narrow."""
    if not groups:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(groups)
    values = sorted(statistic([groups[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = (1 - level) / 2
    low = values[int(tail * (resamples - 1))]
    high = values[math.ceil((1 - tail) * (resamples - 1))]
    return (low, high)


def paired(
    a: Sequence[bool | float], b: Sequence[bool | float], *, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean of a - b over paired items (each right or not, or a share of right samples), with a percentile
    bootstrap 95% interval (resampling items)."""
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    if n == 0:
        return {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "wins": 0, "losses": 0, "n": 0}
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return {
        "diff": sum(diffs) / n,
        "ci_low": means[int(0.025 * (resamples - 1))],
        "ci_high": means[int(0.975 * (resamples - 1)) + 1 if resamples > 1 else 0],
        "wins": sum(d > 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
        "n": n,
    }
