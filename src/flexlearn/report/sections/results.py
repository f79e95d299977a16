"""The results section: one row per mode (accuracy, the task's metric, the difference against vanilla, costs)
and a bar chart of the headline number by mode."""

from __future__ import annotations

from flexlearn.records import ModeResult, Results
from flexlearn.report import svg
from flexlearn.report.format import ci, duration, integer, mode_color, pct, per, table
from flexlearn.report.sections.calls import calls
from flexlearn.report.svg import esc

NOTE = (
    "n counts problems. Confidence intervals are 95%: Wilson for accuracy with one attempt per problem, a "
    "bootstrap over problems with repeats or for a task metric. Calls and tokens per item count every model "
    "call an attempt made (agent mode includes the critic)."
)
REPEATS_NOTE = " With repeats, accuracy and the per-item columns are over every attempt (n x repeats)."


def results(run_results: Results) -> str:
    """The results table, its note, the chart by mode and the calls by role."""
    rows = run_results.results
    has_metric = any(m.metric is not None for m in rows)
    has_repeats = any((m.repeats or 1) > 1 for m in rows)
    base = next((m for m in rows if m.mode.lower() == "vanilla"), None)
    metric_names = sorted({m.metric.name for m in rows if m.metric is not None})
    metric_title = " / ".join(metric_names) if metric_names else "metric"

    headers = ["Mode", "Accuracy <span class=ci>[95% CI]</span>"]
    if has_metric:
        headers.append(f"{esc(metric_title)} <span class=ci>[95% CI]</span>")
    if base is not None and len(rows) > 1:
        headers.append("Δ vs vanilla")
    headers += ["n"] + (["Repeats"] if has_repeats else []) + ["Calls/item", "Tokens/item", "Errors", "Time"]
    body = [_row(m, base if len(rows) > 1 else None, has_metric=has_metric, has_repeats=has_repeats) for m in rows]
    note = NOTE + (REPEATS_NOTE if has_repeats else "")
    return (
        f'<section id="results"><h2>Results</h2>{table(headers, body, css="results")}<p class="note">{esc(note)}</p>'
        f"<figure>{_chart(rows, has_metric, metric_title)}</figure>{calls(run_results)}</section>"
    )


def _row(m: ModeResult, base: ModeResult | None, *, has_metric: bool, has_repeats: bool) -> list[str]:
    cells = [f'<span class="mode">{esc(m.mode)}</span>', f"{pct(m.accuracy)}{ci(m.ci_low, m.ci_high)}"]
    if has_metric:
        if m.metric is None:
            cells.append("—")
        else:
            # The headline is already in the cell; list only the other named values.
            skip = {"metric", m.metric.name}
            extra = " · ".join(f"{esc(k)} {esc(svg.number(v))}" for k, v in m.metric.values.items() if k not in skip)
            cells.append(
                f"{esc(svg.number(m.metric.value))}{ci(m.metric.ci_low, m.metric.ci_high, svg.number)}"
                + (f'<div class="sub">{extra}</div>' if extra else "")
            )
    if base is not None:
        if has_metric and m.metric is not None and base.metric is not None:
            delta = m.metric.value - base.metric.value
            cells.append("—" if m is base else f"{delta:+.3g}")
        else:
            delta = 100 * (m.accuracy - base.accuracy)
            cls = "up" if delta > 0 else "down" if delta < 0 else ""
            cells.append("—" if m is base else f'<span class="{cls}">{delta:+.1f} pp</span>')
    cells.append(integer(m.n))
    if has_repeats:
        cells.append(str(m.repeats or 1))
    tokens, k = m.prompt_tokens + m.completion_tokens, m.attempts
    cells += [
        per(m.calls, k),
        f'{per(tokens, k, 0)}<div class="sub">{per(m.prompt_tokens, k, 0)} in · '
        f"{per(m.completion_tokens, k, 0)} out</div>",
        f'<span class="{"bad" if m.errors else ""}">{integer(m.errors)}</span>',
        esc(duration(m.seconds)),
    ]
    return cells


def _chart(rows: list[ModeResult], has_metric: bool, metric_title: str) -> str:
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
