"""The inheritance section: one model evaluated without a library, with another model's, and with its own."""

from __future__ import annotations

from flexlearn.records import Inherit
from flexlearn.report import svg
from flexlearn.report.format import FLEX_COLOR, OTHER_COLOR, ci, integer, pct, table
from flexlearn.report.svg import esc


def inherit(run_inherit: Inherit) -> str:
    """A table and a bar chart of the settings."""
    rows = [
        [
            esc(r.label),
            esc(r.library or "—"),
            f"{pct(r.accuracy)}{ci(r.ci_low, r.ci_high)}",
            "—" if r.n is None else integer(r.n),
        ]
        for r in run_inherit.rows
    ]
    headers = ["Setting", "Library", "Accuracy <span class=ci>[95% CI]</span>", "n"]
    settings = table(headers, rows, numeric_from=2, css="compact")
    bars = [
        svg.Bar(r.label, r.accuracy, r.ci_low, r.ci_high, FLEX_COLOR if r.library else OTHER_COLOR)
        for r in run_inherit.rows
    ]
    chart = svg.bar_chart(bars, chart_id="chart-inherit", title="Accuracy by inherited library", x_label="accuracy")
    model = f" for {esc(run_inherit.model)}" if run_inherit.model else ""
    return (
        f'<section id="inherit"><h2>Experience inheritance{model}</h2><p class="note">A library learned with one '
        f"model, given to another.</p>{settings}<figure>{chart}</figure></section>"
    )
