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
