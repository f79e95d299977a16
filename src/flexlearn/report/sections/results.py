"""The results section: one row per mode (accuracy, the task's metric, the difference against vanilla, costs),
flex against each other mode paired over the same problems, and a bar chart of the headline number by mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from flexlearn.loop.compare import against_others, by_category
from flexlearn.records import ItemRecord, ModeResult, Results
from flexlearn.report import svg
from flexlearn.report.format import ci, duration, integer, mode_color, pct, per
from flexlearn.report.sections.calls import CallsRow, calls


@dataclass(frozen=True)
class MetricCell:
    """The task's metric for one mode: the headline value, its interval, and the other named values."""

    value: str
    ci: tuple[str, str] | None
    extra: str


@dataclass(frozen=True)
class Delta:
    """The difference against vanilla: text, and "up"/"down" when it is in percentage points."""

    text: str
    direction: str | None = None


@dataclass(frozen=True)
class ResultRow:
    """One mode's row, as text."""

    mode: str
    accuracy: str
    accuracy_ci: tuple[str, str] | None
    metric: MetricCell | None
    delta: Delta | None
    n: str
    repeats: str
    calls: str
    tokens: str
    tokens_in: str
    tokens_out: str
    errors: str
    failed: bool
    time: str


@dataclass(frozen=True)
class PairedRow:
    """Flex minus one other mode on the problems both answered, as text."""

    against: str
    best: bool
    diff: str
    ci: tuple[str, str]
    direction: str
    wins: str
    losses: str
    n: str


@dataclass(frozen=True)
class ResultsSection:
    """What `results.html.j2` shows. `metric_title` is None when no mode has a metric (no metric column)."""

    metric_title: str | None
    delta: bool
    repeats: bool
    rows: list[ResultRow]
    chart: Markup
    calls: list[CallsRow]
    paired: list[PairedRow]
    # Per kind of problem (the items' category): the modes, then one row per kind with "right/n" per mode.
    category_modes: list[str]
    categories: list[tuple[str, list[str]]]


def results(run_results: Results, items: Sequence[ItemRecord] = ()) -> ResultsSection:
    """The results table, flex against each other mode (from the run's `items`), its note, the chart by mode and
    the calls by role."""
    rows = run_results.results
    has_metric = any(m.metric is not None for m in rows)
    has_repeats = any((m.repeats or 1) > 1 for m in rows)
    base = next((m for m in rows if m.mode.lower() == "vanilla"), None)
    metric_names = sorted({m.metric.name for m in rows if m.metric is not None})
    metric_title = " / ".join(metric_names) if metric_names else "metric"
    compare = base if len(rows) > 1 else None
    # results.json keeps no items: each mode gets its own from items.jsonl, for the paired and per-kind tables.
    with_items = [m.model_copy(update={"items": [i for i in items if i.mode == m.mode]}) for m in rows]
    return ResultsSection(
        metric_title=metric_title if has_metric else None,
        delta=compare is not None,
        repeats=has_repeats,
        rows=[_row(m, compare, has_metric=has_metric) for m in rows],
        chart=_chart(rows, has_metric, metric_title),
        calls=calls(run_results),
        paired=_paired(with_items),
        category_modes=[m.mode for m in rows],
        categories=_categories(with_items),
    )


def _categories(rows: list[ModeResult]) -> list[tuple[str, list[str]]]:
    """One row per kind of problem the items name: right over evaluated, per mode ("—" where a mode has none)."""
    kinds = by_category(rows)
    return [
        (kind, [f"{row[m.mode][0]}/{row[m.mode][1]}" if m.mode in row else "—" for m in rows])
        for kind, row in kinds.items()
    ]


def _paired(rows: list[ModeResult]) -> list[PairedRow]:
    """Flex minus each other mode, paired over problems (`loop.compare.against_others`), the most accurate of the
    others marked; empty without flex and another mode with items."""
    compared = {other: row for other, row in against_others(rows).items() if row["n"]}
    accuracy = {m.mode: m.accuracy for m in rows}
    best = max(compared, key=lambda other: accuracy.get(other, 0.0), default=None)
    return [
        PairedRow(
            against=other,
            best=other == best and len(compared) > 1,
            diff=f"{100 * row['diff']:+.1f} pp",
            ci=(f"{100 * row['ci_low']:+.1f}", f"{100 * row['ci_high']:+.1f}"),
            direction="up" if row["ci_low"] > 0 else "down" if row["ci_high"] < 0 else "",
            wins=integer(row["wins"]),
            losses=integer(row["losses"]),
            n=integer(row["n"]),
        )
        for other, row in compared.items()
    ]


def _metric(m: ModeResult) -> MetricCell | None:
    if m.metric is None:
        return None
    # The headline is already in the cell; list only the other named values.
    skip = {"metric", m.metric.name}
    extra = " · ".join(f"{k} {svg.number(v)}" for k, v in m.metric.values.items() if k not in skip)
    return MetricCell(svg.number(m.metric.value), ci(m.metric.ci_low, m.metric.ci_high, svg.number), extra)


def _delta(m: ModeResult, base: ModeResult | None, *, has_metric: bool) -> Delta | None:
    if base is None:
        return None
    if m is base:
        return Delta("—")
    if has_metric and m.metric is not None and base.metric is not None:
        return Delta(f"{m.metric.value - base.metric.value:+.3g}")
    delta = 100 * (m.accuracy - base.accuracy)
    return Delta(f"{delta:+.1f} pp", "up" if delta > 0 else "down" if delta < 0 else "")


def _row(m: ModeResult, base: ModeResult | None, *, has_metric: bool) -> ResultRow:
    k = m.attempts
    return ResultRow(
        mode=m.mode,
        accuracy=pct(m.accuracy),
        accuracy_ci=ci(m.ci_low, m.ci_high),
        metric=_metric(m),
        delta=_delta(m, base, has_metric=has_metric),
        n=integer(m.n),
        repeats=str(m.repeats or 1),
        calls=per(m.calls, k),
        tokens=per(m.prompt_tokens + m.completion_tokens, k, 0),
        tokens_in=per(m.prompt_tokens, k, 0),
        tokens_out=per(m.completion_tokens, k, 0),
        errors=integer(m.errors),
        failed=bool(m.errors),
        time=duration(m.seconds),
    )


def _chart(rows: list[ModeResult], has_metric: bool, metric_title: str) -> Markup:
    if has_metric and all(m.metric is not None for m in rows):
        bars = [
            svg.Bar(m.mode, m.metric.value, m.metric.ci_low, m.metric.ci_high, mode_color(m.mode))
            for m in rows
            if m.metric is not None
        ]
        return svg.bar_chart(
            bars, chart_id="chart-modes", title=f"{metric_title} by mode", x_label=metric_title, fmt=svg.number
        )
    bars = [svg.Bar(m.mode, m.accuracy, m.ci_low, m.ci_high, mode_color(m.mode)) for m in rows]
    return svg.bar_chart(bars, chart_id="chart-modes", title="Accuracy by mode", x_label="accuracy (95% CI)")
