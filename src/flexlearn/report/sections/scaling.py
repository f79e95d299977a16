"""The scaling-law section: accuracy against training problems absorbed, with the log-linear fit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup

from flexlearn.records import Scaling
from flexlearn.report import svg
from flexlearn.report.format import ci, integer, pct


@dataclass(frozen=True)
class PointRow:
    """One point of the sweep, as text."""

    size: str
    experiences: str
    accuracy: str
    accuracy_ci: tuple[str, str] | None
    n: str


@dataclass(frozen=True)
class ScalingSection:
    """What `scaling.html.j2` shows."""

    chart: Markup
    fit: str
    rows: list[PointRow]
    library: str | None


def scaling(run_scaling: Scaling) -> ScalingSection:
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
        PointRow(
            size=integer(p.size),
            experiences="—" if p.experiences is None else integer(p.experiences),
            accuracy=pct(p.accuracy),
            accuracy_ci=ci(p.ci_low, p.ci_high),
            n="—" if p.n is None else integer(p.n),
        )
        for p in sorted(run_scaling.points, key=lambda p: p.size)
    ]
    return ScalingSection(chart, fit_label, rows, run_scaling.library or None)
