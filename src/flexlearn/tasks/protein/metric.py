"""The statistics behind the protein task's scores: Spearman's rho, filling in unscored mutants, and ranks.

A mutant the reply gives no score is treated as average: it gets the median of the scores the reply does give, so
a partial answer sits in the middle of the ranking. Dropping it instead would reward answering only the easy
mutants. Undefined correlations (constant predictions, fewer than two mutants) count as 0.

The headline is ProteinGym's metric: per assay, Spearman between all predicted and measured scores pooled over the
assay's batches (missing predictions filled as above; a batch with none gets the median of the assay's other
predictions), then the mean over assays.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho, or 0.0 where it is undefined (fewer than two pairs, or either side constant)."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    # Imported here: scipy.stats takes about a second to import, which listing or loading tasks should not pay.
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        # Checked above; this keeps any remaining degenerate case (e.g. huge magnitudes) from spamming warnings.
        warnings.simplefilter("ignore")
        rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else 0.0


def filled(mutants: Sequence[str], pred: dict[str, float]) -> list[float]:
    """Predictions for every mutant, a missing one given the median of the others (the middle of the ranking)."""
    fill = statistics.median(pred.values()) if pred else 0.0
    return [pred.get(m, fill) for m in mutants]


def pooled_spearman(predicted: Sequence[float | None], measured: Sequence[float]) -> float:
    """Spearman over one assay's pooled batches; a None (a batch the reply scored nothing of) gets the median of
    the assay's other predictions, 0.0 when there are none."""
    known = [value for value in predicted if value is not None]
    fill = statistics.median(known) if known else 0.0
    return spearman([fill if value is None else value for value in predicted], measured)


def scaled_ranks(values: Sequence[float]) -> list[str]:
    """Average ranks scaled to [0, 1], written with just enough decimals to keep distinct ranks apart.

    Spearman sees only the order, so ranks lose nothing the metric sees, and they keep worked examples on the
    instructed 0-1 scale whatever the assay's units (BLAT's scores run from -3 to 0.6, IF1's from -0.5 to 1.3).
    """
    n = len(values)
    if n < 2:
        return ["1" for _ in values]
    order = sorted(range(n), key=lambda i: values[i])
    ranks = [0.0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2
        start = end + 1
    # Rounding error must stay under a quarter of the step 1/(n-1), so no two ranks round to the same text.
    decimals = max(2, math.ceil(math.log10(2 * (n - 1))))
    return [f"{rank / (n - 1):.{decimals}f}" for rank in ranks]
