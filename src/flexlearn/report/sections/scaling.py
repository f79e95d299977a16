"""The scaling-law section: accuracy against training problems absorbed, with the log-linear fit."""

from __future__ import annotations

import math

from flexlearn.records import Scaling
from flexlearn.report import svg
from flexlearn.report.format import ci, integer, pct, table
from flexlearn.report.svg import esc


def scaling(run_scaling: Scaling) -> str:
    """The chart on a ln(1+size) axis, the fit's formula, and a table of the points."""
    points = [svg.Point(p.size, p.accuracy, p.ci_low, p.ci_high) for p in run_scaling.points]
    fit = run_scaling.fit
    fit_fn = None
    fit_label = ""
    if fit is not None:
        intercept, slope = fit.intercept, fit.slope

        def fit_fn(x: float) -> float:
            return intercept + slope * math.log1p(x)

        fit_label = fit.formula
        if fit.r2 is not None:
            fit_label += f"  (R² = {fit.r2:.3f})"
    chart = svg.scaling_chart(
        points,
        chart_id="chart-scaling",
        title="Accuracy against training problems absorbed",
        x_label="training problems absorbed (ln(1+size) scale)",
        y_label="accuracy (95% CI)",
        fit=fit_fn,
        fit_label=fit_label,
    )
    rows = [
        [
            integer(p.size),
            "—" if p.experiences is None else integer(p.experiences),
            f"{pct(p.accuracy)}{ci(p.ci_low, p.ci_high)}",
            "—" if p.n is None else integer(p.n),
        ]
        for p in sorted(run_scaling.points, key=lambda p: p.size)
    ]
    headers = ["Training problems", "Experiences", "Accuracy <span class=ci>[95% CI]</span>", "n"]
    points_table = table(headers, rows, numeric_from=0, css="compact")
    fit_text = f'<p class="fit">Fit: <code>{esc(fit_label)}</code></p>' if fit_label else ""
    lib = f'<p class="note">Library: {esc(run_scaling.library)}</p>' if run_scaling.library else ""
    return (
        f'<section id="scaling"><h2>Scaling law</h2><p class="note">The paper reports accuracy growing roughly '
        f"linearly in the log of the experience absorbed; the x axis is ln(1+size) so that the empty library has "
        f"a place, labelled with real sizes.</p><figure>{chart}</figure>{fit_text}{points_table}{lib}</section>"
    )
