"""The inheritance section: one model evaluated without a library, with another model's, and with its own."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from flexlearn.records import Inherit
from flexlearn.report import svg
from flexlearn.report.format import FLEX_COLOR, OTHER_COLOR, ci, integer, pct


@dataclass(frozen=True)
class SettingRow:
    """One setting (no library, another model's, its own), as text."""

    label: str
    library: str
    accuracy: str
    accuracy_ci: tuple[str, str] | None
    n: str


@dataclass(frozen=True)
class InheritSection:
    """What `inherit.html.j2` shows."""

    model: str | None
    rows: list[SettingRow]
    chart: Markup


def inherit(run_inherit: Inherit) -> InheritSection:
    """A table and a bar chart of the settings."""
    rows = [
        SettingRow(
            label=r.label,
            library=r.library or "—",
            accuracy=pct(r.accuracy),
            accuracy_ci=ci(r.ci_low, r.ci_high),
            n="—" if r.n is None else integer(r.n),
        )
        for r in run_inherit.rows
    ]
    bars = [
        svg.Bar(r.label, r.accuracy, r.ci_low, r.ci_high, FLEX_COLOR if r.library else OTHER_COLOR)
        for r in run_inherit.rows
    ]
    chart = svg.bar_chart(bars, chart_id="chart-inherit", title="Accuracy by inherited library", x_label="accuracy")
    return InheritSection(run_inherit.model or None, rows, chart)
