"""The run report: one self-contained HTML page built from a run directory, without calling any model.

Reads what `flex eval --out DIR` and friends wrote (`results.json`, `items.jsonl`, and optionally `library.json`,
`scaling.json`, `inherit.json`) and renders a page that needs nothing from the network: inline CSS, inline SVG
charts, <details> for drill-down, and one tiny inline script (allowed by hash in the page's Content Security
Policy) that opens collapsed sections when a link points into them. Every piece of user or model text is
HTML-escaped: model replies routinely contain `<`, LaTeX and SMILES.

    write_report(Path("runs/aime")) -> Path("runs/aime/report.html")
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from flexlearn import __version__
from flexlearn.errors import InputError
from flexlearn.report import svg
from flexlearn.report.svg import esc

RESULTS = "results.json"
ITEMS = "items.jsonl"
LIBRARY = "library.json"
SCALING = "scaling.json"
INHERIT = "inherit.json"
REPORT = "report.html"

# Caps that keep a large run's page light enough for a browser; the full text stays in items.jsonl.
MAX_PROBLEMS = 500
MAX_EXPERIENCES = 1000
QUESTION_CHARS = 2000
PROMPT_CHARS = 2000
REPLY_CHARS = 3000
CONTENT_CHARS = 1200
TOP_RETRIEVED = 10

LEVELS = ("principle", "pattern", "case")
ZONES = ("golden", "warning")
FLEX_COLOR = svg.ACCENT
OTHER_COLOR = "#8c959f"


# ----------------------------------------------------------------------------------------------------------------
# Input files. Lenient about absent fields (older runs, other writers), strict about wrong types, so that a
# malformed file is reported by name instead of surfacing as a confusing page.


class _Model(BaseModel):
    # Unknown fields are ignored so that writers can add fields without breaking old reports.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class CallStats(_Model):
    calls: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


class Metric(_Model):
    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    values: dict[str, float] = {}


class ModeSummary(_Model):
    mode: str
    n: int = 0
    correct: int = 0
    accuracy: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: int = 0
    # Evaluated samples, n x repeats; absent in runs written before repeats existed, where it equals n.
    samples: int | None = None
    repeats: int | None = 1
    metric: Metric | None = None

    @property
    def attempts(self) -> int:
        """The denominator for accuracy and per-item costs: every evaluated sample."""
        return self.samples or self.n

    @property
    def acc(self) -> float:
        if self.accuracy is not None:
            return self.accuracy
        return self.correct / self.attempts if self.attempts else 0.0


class Results(_Model):
    task: str | None = None
    test: str | None = None
    train: str | None = None
    library: str | None = None
    model: str | None = None
    started: float | None = None
    seconds: float | None = None
    config: dict[str, Any] = {}
    calls: dict[str, CallStats] = {}
    results: list[ModeSummary]


class Item(_Model):
    mode: str
    problem_id: str
    question: str = ""
    reference: str = ""
    prompt: str = ""
    reply: str = ""
    extracted: str | None = None
    correct: bool = False
    score: float | None = None
    retrieved: list[str] = []
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rounds: int = 1
    error: str | None = None
    repeat: int | None = None
    score_data: dict[str, Any] | None = None

    @field_validator("retrieved", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class ExperienceView(_Model):
    id: str
    zone: str
    level: str
    title: str = ""
    content: str = ""
    examples: list[str] = []
    parent_id: str | None = None
    provenance: dict[str, Any] = {}
    retrieved: int = 0
    helped: int = 0
    hurt: int = 0


class LibraryStats(_Model):
    total: int | None = None
    by_zone_level: dict[str, dict[str, int]] = {}
    events: dict[str, int] = {}


class LibrarySnapshot(_Model):
    path: str | None = None
    stats: LibraryStats = LibraryStats()
    experiences: list[ExperienceView] = []


class ScalingPoint(_Model):
    size: float
    experiences: int | None = None
    accuracy: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


class Fit(_Model):
    intercept: float
    slope: float
    r2: float | None = None
    formula: str = ""


class Scaling(_Model):
    task: str | None = None
    model: str | None = None
    library: str | None = None
    points: list[ScalingPoint] = []
    fit: Fit | None = None


class InheritRow(_Model):
    label: str
    library: str | None = None
    accuracy: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


class Inherit(_Model):
    task: str | None = None
    model: str | None = None
    rows: list[InheritRow] = []


M = TypeVar("M", bound=BaseModel)


def _invalid(exc: ValidationError) -> str:
    """The first validation problem, located by its JSON path (results.2.accuracy)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def _load_json(path: Path, model: type[M]) -> M | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=str(path), line=exc.lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", path=str(path)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"not a valid {path.name} file: {_invalid(exc)}", path=str(path)) from None


def _load_items(path: Path) -> list[Item]:
    if not path.exists():
        return []
    items: list[Item] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    items.append(Item.model_validate(json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"not valid JSON ({exc.msg})", path=str(path), line=number) from None
                except ValidationError as exc:
                    raise InputError(f"not a valid item record: {_invalid(exc)}", path=str(path), line=number) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", path=str(path)) from None
    return items


@dataclass
class Run:
    """Everything the report reads from a run directory; absent files are None (or empty)."""

    directory: Path
    results: Results | None
    items: list[Item]
    library: LibrarySnapshot | None
    scaling: Scaling | None
    inherit: Inherit | None


def load_run(run_dir: Path) -> Run:
    """Read and validate a run directory. Raises InputError naming the directory when it holds none of
    results.json, scaling.json and inherit.json, and naming the file when one is malformed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("no such run directory", path=str(run_dir))
    run = Run(
        directory=run_dir,
        results=_load_json(run_dir / RESULTS, Results),
        items=_load_items(run_dir / ITEMS),
        library=_load_json(run_dir / LIBRARY, LibrarySnapshot),
        scaling=_load_json(run_dir / SCALING, Scaling),
        inherit=_load_json(run_dir / INHERIT, Inherit),
    )
    if run.results is None and run.scaling is None and run.inherit is None:
        raise InputError(
            f"nothing to report: none of {RESULTS}, {SCALING} or {INHERIT} is in this directory", path=str(run_dir)
        )
    return run


# ----------------------------------------------------------------------------------------------------------------
# Formatting helpers.


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else svg.percent(value)


def _ci(low: float | None, high: float | None, fmt: Callable[[float], str] = _pct) -> str:
    if low is None or high is None:
        return ""
    return f' <span class="ci">[{esc(fmt(low))}–{esc(fmt(high))}]</span>'


def _int(value: float) -> str:
    return f"{value:,.0f}"


def _per(total: float, n: int, digits: int = 1) -> str:
    return f"{total / n:,.{digits}f}" if n else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _date(started: float | None) -> str:
    if started is None:
        return "—"
    try:
        return datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return "—"


def _clip(text: str, limit: int) -> tuple[str, int]:
    """Head and tail of a long text (the question usually sits at a prompt's end, the final answer at a reply's
    end), and how many characters were left out (0 when nothing was)."""
    if len(text) <= limit:
        return text, 0
    head = limit * 2 // 3
    tail = limit - head
    omitted = len(text) - limit
    return f"{text[:head]}\n\n[… {omitted:,} characters omitted …]\n\n{text[-tail:]}", omitted


def _pre(text: str, limit: int, css: str = "") -> str:
    shown, omitted = _clip(text, limit)
    note = (
        f'<p class="note">Truncated here: {len(text):,} characters, {omitted:,} left out. '
        f"The full text is in {ITEMS}.</p>"
        if omitted
        else ""
    )
    return f'<pre class="{css}">{esc(shown)}</pre>{note}' if text else '<p class="muted">(empty)</p>'


def _one_line(text: str, limit: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _anchor(prefix: str, key: str) -> str:
    """A safe HTML id for an experience or problem id; ids with odd characters get a hash suffix so that two
    ids that clean up to the same text stay apart."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", key)
    if safe != key:
        safe += "-" + hashlib.sha1(key.encode()).hexdigest()[:6]
    return f"{prefix}-{safe}"


def _plain(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric_from: int = 1, css: str = "") -> str:
    """A table of already-escaped cells; columns from `numeric_from` on are right-aligned numbers."""

    def cell(tag: str, i: int, text: str) -> str:
        return f"<{tag} class=num>{text}</{tag}>" if i >= numeric_from else f"<{tag}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _mode_color(mode: str) -> str:
    return FLEX_COLOR if mode.lower().startswith("flex") else OTHER_COLOR


# ----------------------------------------------------------------------------------------------------------------
# Sections.


def _task_and_model(run: Run) -> tuple[str | None, str | None]:
    """The task and model, from whichever of the run's files names them."""
    sources: list[Results | Scaling | Inherit] = [f for f in (run.results, run.scaling, run.inherit) if f is not None]
    task = next((f.task for f in sources if f.task), None)
    model = next((f.model for f in sources if f.model), None)
    return task, model


def _header(run: Run) -> str:
    r, s = run.results, run.scaling
    named_task, named_model = _task_and_model(run)
    task, model = named_task or "unknown task", named_model or "unknown model"
    facts: list[tuple[str, str]] = [("Task", task), ("Model", model)]
    if r is not None:
        facts += [
            ("Date", _date(r.started)),
            ("Duration", _duration(r.seconds)),
            ("Test file", r.test or "—"),
            ("Train file", r.train or "—"),
            ("Library", r.library or "—"),
        ]
    elif s is not None:
        facts.append(("Library", s.library or "—"))
    facts.append(("Run directory", str(run.directory)))
    dl = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts)
    config = ""
    if r is not None and r.config:
        cells = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(_plain(v))}</dd></div>" for k, v in _flatten(r.config))
        config = f'<h2 class="small">Configuration</h2><dl class="facts config">{cells}</dl>'
    return (
        f'<header><p class="kicker">FLEX report</p><h1>{esc(task)} <span class="muted">·</span> {esc(model)}</h1>'
        f'<dl class="facts">{dl}</dl>{config}</header>'
    )


def _nav(sections: Sequence[tuple[str, str]]) -> str:
    links = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in sections)
    return f'<nav aria-label="Sections">{links}</nav>'


def _results(run: Run) -> str:
    assert run.results is not None
    rows = run.results.results
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
    body: list[list[str]] = []
    for m in rows:
        cells = [f'<span class="mode">{esc(m.mode)}</span>', f"{_pct(m.acc)}{_ci(m.ci_low, m.ci_high)}"]
        if has_metric:
            if m.metric is None:
                cells.append("—")
            else:
                values = m.metric.values.items()
                # The headline is already in the cell; list only the other named values.
                skip = {"metric", m.metric.name}
                extra = " · ".join(f"{esc(k)} {esc(svg.number(v))}" for k, v in values if k not in skip)
                cells.append(
                    f"{esc(svg.number(m.metric.value))}{_ci(m.metric.ci_low, m.metric.ci_high, svg.number)}"
                    + (f'<div class="sub">{extra}</div>' if extra else "")
                )
        if base is not None and len(rows) > 1:
            if has_metric and m.metric is not None and base.metric is not None:
                delta = m.metric.value - base.metric.value
                cells.append("—" if m is base else f"{delta:+.3g}")
            else:
                delta = 100 * (m.acc - base.acc)
                cls = "up" if delta > 0 else "down" if delta < 0 else ""
                cells.append("—" if m is base else f'<span class="{cls}">{delta:+.1f} pp</span>')
        cells.append(_int(m.n))
        if has_repeats:
            cells.append(str(m.repeats or 1))
        tokens, k = m.prompt_tokens + m.completion_tokens, m.attempts
        cells += [
            _per(m.calls, k),
            f'{_per(tokens, k, 0)}<div class="sub">{_per(m.prompt_tokens, k, 0)} in · '
            f"{_per(m.completion_tokens, k, 0)} out</div>",
            f'<span class="{"bad" if m.errors else ""}">{_int(m.errors)}</span>',
            esc(_duration(m.seconds)),
        ]
        body.append(cells)
    table = _table(headers, body, css="results")

    if has_metric and all(m.metric is not None for m in rows):
        bars = [
            svg.Bar(m.mode, m.metric.value, m.metric.ci_low, m.metric.ci_high, _mode_color(m.mode))
            for m in rows
            if m.metric is not None
        ]
        chart = svg.bar_chart(
            bars, chart_id="chart-modes", title=f"{metric_title} by mode", x_label=metric_title, fmt=svg.number
        )
    else:
        bars = [svg.Bar(m.mode, m.acc, m.ci_low, m.ci_high, _mode_color(m.mode)) for m in rows]
        chart = svg.bar_chart(bars, chart_id="chart-modes", title="Accuracy by mode", x_label="accuracy (95% CI)")
    note = (
        "n counts problems. Confidence intervals are 95%: Wilson for accuracy with one attempt per problem, a "
        "bootstrap over problems with repeats or for a task metric. Calls and tokens per item count every model "
        "call an attempt made (agent mode includes the critic)."
    )
    if has_repeats:
        note += " With repeats, accuracy and the per-item columns are over every attempt (n x repeats)."
    return (
        f'<section id="results"><h2>Results</h2>{table}<p class="note">{esc(note)}</p>'
        f"<figure>{chart}</figure>{_calls(run.results)}</section>"
    )


def _calls(results: Results) -> str:
    if not results.calls:
        return ""
    rows = []
    for role, c in results.calls.items():
        rate = f"{c.completion_tokens / c.latency_s:,.1f}" if c.latency_s > 0 else "—"
        rows.append(
            [
                esc(role),
                _int(c.calls),
                f'<span class="{"bad" if c.failures else ""}">{_int(c.failures)}</span>',
                _int(c.retries),
                _int(c.prompt_tokens),
                _int(c.completion_tokens),
                _per(c.latency_s, c.calls, 2),
                rate,
            ]
        )
    table = _table(
        ["Role", "Calls", "Failures", "Retries", "Prompt tokens", "Completion tokens", "Latency/call (s)", "Out tok/s"],
        rows,
    )
    return f"<details><summary>Model calls by role</summary>{table}</details>"


def _scaling(scaling: Scaling) -> str:
    points = [svg.Point(p.size, p.accuracy, p.ci_low, p.ci_high) for p in scaling.points]
    fit = scaling.fit
    fit_fn = None
    fit_label = ""
    if fit is not None:
        intercept, slope = fit.intercept, fit.slope

        def fit_fn(x: float) -> float:
            return intercept + slope * math.log1p(x)

        fit_label = fit.formula or f"acc = {intercept:.3g} + {slope:.3g} ln(1+size)"
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
            _int(p.size),
            "—" if p.experiences is None else _int(p.experiences),
            f"{_pct(p.accuracy)}{_ci(p.ci_low, p.ci_high)}",
            "—" if p.n is None else _int(p.n),
        ]
        for p in sorted(scaling.points, key=lambda p: p.size)
    ]
    headers = ["Training problems", "Experiences", "Accuracy <span class=ci>[95% CI]</span>", "n"]
    table = _table(headers, rows, numeric_from=0, css="compact")
    fit_text = f'<p class="fit">Fit: <code>{esc(fit_label)}</code></p>' if fit_label else ""
    lib = f'<p class="note">Library: {esc(scaling.library)}</p>' if scaling.library else ""
    return (
        f'<section id="scaling"><h2>Scaling law</h2><p class="note">The paper reports accuracy growing roughly '
        f"linearly in the log of the experience absorbed; the x axis is ln(1+size) so that the empty library has "
        f"a place, labelled with real sizes.</p><figure>{chart}</figure>{fit_text}{table}{lib}</section>"
    )


def _inherit(inherit: Inherit) -> str:
    rows = [
        [
            esc(r.label),
            esc(r.library or "—"),
            f"{_pct(r.accuracy)}{_ci(r.ci_low, r.ci_high)}",
            "—" if r.n is None else _int(r.n),
        ]
        for r in inherit.rows
    ]
    headers = ["Setting", "Library", "Accuracy <span class=ci>[95% CI]</span>", "n"]
    table = _table(headers, rows, numeric_from=2, css="compact")
    bars = [
        svg.Bar(r.label, r.accuracy, r.ci_low, r.ci_high, FLEX_COLOR if r.library else OTHER_COLOR)
        for r in inherit.rows
    ]
    chart = svg.bar_chart(bars, chart_id="chart-inherit", title="Accuracy by inherited library", x_label="accuracy")
    model = f" for {esc(inherit.model)}" if inherit.model else ""
    return (
        f'<section id="inherit"><h2>Experience inheritance{model}</h2><p class="note">A library learned with one '
        f"model, given to another.</p>{table}<figure>{chart}</figure></section>"
    )


@dataclass
class _Experiences:
    """What the library section decided, reused by the drill-down for links."""

    anchors: dict[str, str] = field(default_factory=dict)
    by_id: dict[str, ExperienceView] = field(default_factory=dict)


def _composition(library: LibrarySnapshot) -> dict[str, dict[str, int]]:
    counts = {z: {lv: 0 for lv in LEVELS} for z in ZONES}
    if library.stats.by_zone_level:
        for zone, levels in library.stats.by_zone_level.items():
            counts.setdefault(zone, {lv: 0 for lv in LEVELS}).update(levels)
    else:
        for e in library.experiences:
            counts.setdefault(e.zone, {lv: 0 for lv in LEVELS})
            counts[e.zone][e.level] = counts[e.zone].get(e.level, 0) + 1
    return counts


def _library(run: Run, shown: _Experiences) -> str:
    library = run.library
    in_run = Counter(eid for item in run.items for eid in item.retrieved)
    parts = ['<section id="library"><h2>Experience library</h2>']
    if library is None:
        parts.append(f'<p class="note">No {LIBRARY} in this run directory: composition and content unavailable.</p>')
    else:
        counts = _composition(library)
        levels = [*LEVELS, *sorted({lv for z in counts.values() for lv in z} - set(LEVELS))]
        rows = [
            [
                f'<span class="badge {esc(z)}">{esc(z)}</span>',
                *(_int(counts[z].get(lv, 0)) for lv in levels),
                f"<strong>{_int(sum(counts[z].values()))}</strong>",
            ]
            for z in counts
        ]
        rows.append(
            [
                "<strong>total</strong>",
                *(f"<strong>{_int(sum(c.get(lv, 0) for c in counts.values()))}</strong>" for lv in levels),
                f"<strong>{_int(sum(sum(c.values()) for c in counts.values()))}</strong>",
            ]
        )
        table = _table(["Zone", *map(esc, levels), "Total"], rows, css="composition")
        chart = svg.composition_chart(counts, chart_id="chart-library", title="Library composition by zone and level")
        events = ", ".join(f"{esc(k)} {_int(v)}" for k, v in library.stats.events.items() if v)
        path = f"{esc(library.path)}. " if library.path else ""
        parts.append(
            f'<p class="note">{path}Golden entries record what worked; warning entries what failed and why. '
            f"Levels run from general principles to concrete cases.</p>"
            f'<div class="split"><figure>{chart}</figure><div>{table}'
            + (f'<p class="note">Library events: {events}.</p>' if events else "")
            + "</div></div>"
        )
    parts.append(_retrieved_list(library, in_run, shown))
    parts.append("</section>")
    return "".join(parts)


def _retrieved_list(library: LibrarySnapshot | None, in_run: Counter[str], shown: _Experiences) -> str:
    use_run = sum(in_run.values()) > 0
    source = "counted over this run's items" if use_run else "from the library's lifetime retrieval counter"
    if library is None:
        if not use_run:
            return ""
        rows = [[f"<code>{esc(eid)}</code>", _int(n)] for eid, n in in_run.most_common(TOP_RETRIEVED)]
        return (
            f"<h3>Most retrieved experiences</h3><p class=note>Retrievals {source}; content unavailable without "
            f"{LIBRARY}.</p>{_table(['Experience', 'Retrieved'], rows)}"
        )
    exps = library.experiences
    if not exps:
        return '<p class="note">The library snapshot lists no experiences.</p>'

    def count(e: ExperienceView) -> int:
        return in_run[e.id] if use_run else e.retrieved

    zone_rank = {z: i for i, z in enumerate(ZONES)}
    level_rank = {lv: i for i, lv in enumerate(LEVELS)}
    # Most retrieved first (ties by zone, level, title) so that, under the cap, the linked ones are the listed ones.
    ordered = sorted(
        exps,
        key=lambda e: (-count(e), zone_rank.get(e.zone, 9), level_rank.get(e.level, 9), e.title, e.id),
    )
    # A snapshot should not repeat an id, but if one does, list it once: ids are anchors and must be unique.
    ordered = list({e.id: e for e in ordered}.values())
    listed = ordered[:MAX_EXPERIENCES]
    for e in listed:
        shown.anchors[e.id] = _anchor("exp", e.id)
        shown.by_id[e.id] = e
    top = [e for e in listed[:TOP_RETRIEVED] if count(e) > 0]
    rest = listed[len(top) :]
    cards = "".join(_experience_card(e, in_run, shown) for e in top)
    out = [f'<h3>Most retrieved experiences</h3><p class="note">Top {len(top)}, retrievals {source}.</p>']
    out.append(cards or '<p class="muted">No experience was retrieved.</p>')
    if rest:
        more = "".join(_experience_card(e, in_run, shown) for e in rest)
        capped = (
            f'<p class="note">Showing {len(listed):,} of {len(exps):,} experiences; the rest are in {LIBRARY}.</p>'
            if len(exps) > len(listed)
            else ""
        )
        out.append(
            f'<details class="all-exp"><summary>All other experiences ({len(rest):,})</summary>{capped}{more}</details>'
        )
    return "".join(out)


def _experience_card(e: ExperienceView, in_run: Counter[str], shown: _Experiences) -> str:
    content, _ = _clip(e.content, CONTENT_CHARS)
    examples = "".join(f"<li><pre>{esc(_clip(x, 600)[0])}</pre></li>" for x in e.examples[:2])
    more_examples = f"<li class=muted>… {len(e.examples) - 2} more</li>" if len(e.examples) > 2 else ""
    parent = ""
    if e.parent_id:
        target = shown.anchors.get(e.parent_id)
        ref = f'<a href="#{target}">{esc(e.parent_id)}</a>' if target else f"<code>{esc(e.parent_id)}</code>"
        parent = f" · parent {ref}"
    counts = (
        f"retrieved {in_run[e.id]:,}× in this run · {e.retrieved:,}× overall · helped {e.helped:,} · hurt {e.hurt:,}"
    )
    title = esc(e.title) if e.title else '<span class="muted">(untitled)</span>'
    return (
        f'<article class="exp {esc(e.zone)}" id="{shown.anchors.get(e.id, _anchor("exp", e.id))}">'
        f'<div class="exp-head"><span class="badge {esc(e.zone)}">{esc(e.zone)}</span>'
        f'<span class="badge level">{esc(e.level)}</span><strong>{title}</strong>'
        f'<code class="id">{esc(e.id)}</code></div>'
        f'<p class="exp-body">{esc(content)}</p>'
        + (f'<ul class="examples">{examples}{more_examples}</ul>' if examples else "")
        + f'<p class="exp-meta">{counts}{parent}</p></article>'
    )


@dataclass
class _Problem:
    problem_id: str
    question: str
    reference: str
    by_mode: dict[str, list[Item]] = field(default_factory=dict)


def _group(items: Sequence[Item]) -> list[_Problem]:
    problems: dict[str, _Problem] = {}
    for item in items:
        p = problems.get(item.problem_id)
        if p is None:
            p = problems[item.problem_id] = _Problem(item.problem_id, item.question, item.reference)
        p.by_mode.setdefault(item.mode, []).append(item)
    for p in problems.values():
        for attempts in p.by_mode.values():
            attempts.sort(key=lambda i: i.repeat or 0)
    return list(problems.values())


def _disagree(p: _Problem) -> bool:
    """Whether the modes scored this problem differently (with repeats: a different share of correct attempts;
    a mode that is wrong on one repeat and right on another does not disagree with itself)."""
    return len({sum(a.correct for a in atts) / len(atts) for atts in p.by_mode.values() if atts}) > 1


def _mark(attempts: Sequence[Item] | None) -> str:
    if not attempts:
        return '<span class="muted" title="not evaluated">–</span>'
    if len(attempts) == 1:
        a = attempts[0]
        if a.error:
            return '<span class="bad" title="error">⚠</span>'
        return '<span class="ok" title="correct">✓</span>' if a.correct else '<span class="bad" title="wrong">✗</span>'
    right = sum(a.correct for a in attempts)
    cls = "ok" if right == len(attempts) else "bad" if right == 0 else "mixed"
    return f'<span class="{cls}" title="{right} of {len(attempts)} repeats correct">{right}/{len(attempts)}</span>'


def _retrieved_links(ids: Sequence[str], shown: _Experiences) -> str:
    if not ids:
        return '<span class="muted">—</span>'
    links = []
    for eid in ids:
        target = shown.anchors.get(eid)
        exp = shown.by_id.get(eid)
        if target and exp is not None:
            tip = f"{exp.zone} {exp.level}: {exp.title or _one_line(exp.content, 80)}"
            links.append(f'<a class="xref {esc(exp.zone)}" href="#{target}" title="{esc(tip)}">{esc(eid)}</a>')
        else:
            links.append(f'<code class="xref" title="not listed in this report">{esc(eid)}</code>')
    return " ".join(links)


def _drilldown(run: Run, modes: Sequence[str], shown: _Experiences, max_problems: int) -> str:
    problems = _group(run.items)
    if not problems:
        return ""
    listed = problems[:max_problems]
    differ = sum(_disagree(p) for p in problems)
    columns = f"grid-template-columns: 1.2rem minmax(6rem, 11rem) minmax(0, 1fr) repeat({len(modes)}, 4.2rem)"
    header = (
        f'<div class="prow phead" style="{columns}" aria-hidden="true"><span></span><span>Problem</span>'
        "<span>Question</span>" + "".join(f"<span>{esc(m)}</span>" for m in modes) + "</div>"
    )
    rows = [_problem_row(p, modes, shown, columns) for p in listed]
    intro = f"{len(problems):,} problems; the modes disagree on {differ:,}. Click a row for each mode's reply."
    cap = (
        f'<p class="note warn">Showing the first {len(listed):,} of {len(problems):,} problems; every item is in '
        f"{ITEMS}.</p>"
        if len(problems) > len(listed)
        else ""
    )
    return (
        f'<section id="items"><h2>Per-item results</h2><p class="note">{esc(intro)} Rows where the modes disagree '
        f'are marked on the left.</p>{cap}<div class="problems">{header}{"".join(rows)}</div></section>'
    )


def _problem_row(p: _Problem, modes: Sequence[str], shown: _Experiences, columns: str) -> str:
    marks = "".join(f'<span class="mark">{_mark(p.by_mode.get(m))}</span>' for m in modes)
    summary = (
        f'<summary class="prow" style="{columns}"><span class="caret" aria-hidden="true">▸</span>'
        f'<span class="pid">{esc(p.problem_id)}</span><span class="q">{esc(_one_line(p.question))}</span>{marks}'
        "</summary>"
    )
    compare_rows = []
    blocks = []
    for mode in [*modes, *(m for m in p.by_mode if m not in modes)]:
        for a in p.by_mode.get(mode, []):
            # Repeats are numbered from 0 in items.jsonl; people count from 1.
            several = a.repeat is not None and len(p.by_mode[mode]) > 1
            label = f"{mode} (repeat {(a.repeat or 0) + 1})" if several else mode
            score = "—" if a.score is None else svg.number(a.score)
            compare_rows.append(
                [
                    f'<span class="mode">{esc(label)}</span>',
                    _mark([a]),
                    "<code>—</code>" if a.extracted is None else f"<code>{esc(_clip(a.extracted, 300)[0])}</code>",
                    score,
                    _retrieved_links(a.retrieved, shown),
                    _int(a.calls),
                    _int(a.prompt_tokens + a.completion_tokens),
                    _int(a.rounds),
                ]
            )
            error = f'<p class="bad">Error: {esc(a.error)}</p>' if a.error else ""
            data = ""
            if a.score_data:
                dumped = json.dumps(a.score_data, indent=2, ensure_ascii=False)
                data = f"<details><summary>Score data</summary><pre>{esc(dumped)}</pre></details>"
            blocks.append(
                f'<div class="attempt"><h4>{esc(label)} {_mark([a])}</h4>{error}'
                f'<div class="label">Reply</div>{_pre(a.reply, REPLY_CHARS, "reply")}'
                f"<details><summary>Prompt ({len(a.prompt):,} characters)</summary>{_pre(a.prompt, PROMPT_CHARS)}"
                f"</details>{data}</div>"
            )
    compare = _table(
        ["Mode", "", "Extracted answer", "Score", "Retrieved experience", "Calls", "Tokens", "Rounds"],
        compare_rows,
        numeric_from=5,
        css="compare",
    )
    body = (
        f'<div class="pbody"><div class="label">Question</div>{_pre(p.question, QUESTION_CHARS)}'
        f'<div class="label">Reference answer</div><pre class="ref">{esc(_clip(p.reference, 2000)[0])}</pre>'
        f"{compare}{''.join(blocks)}</div>"
    )
    cls = "problem differ" if _disagree(p) else "problem"
    return f'<details class="{cls}" id="{_anchor("p", p.problem_id)}">{summary}{body}</details>'


# ----------------------------------------------------------------------------------------------------------------
# The page.

# Opens every collapsed <details> around a link's target, so links into the drill-down and the experience list
# land on something visible (browsers differ on doing this themselves).
_SCRIPT = (
    "function flexOpen(){var id=decodeURIComponent(location.hash.slice(1));var t=id&&document.getElementById(id);"
    "if(!t)return;for(var n=t;n;n=n.parentElement){if(n.tagName==='DETAILS')n.open=true;}t.scrollIntoView();}"
    "addEventListener('hashchange',flexOpen);flexOpen();"
)

_CSS = """
:root{--ink:#1f2328;--muted:#656d76;--line:#d8dee4;--zebra:#f6f8fa;--accent:#0969da;--golden:#1a7f37;
--golden-bg:#dafbe1;--warning:#cf222e;--warning-bg:#ffebe9;--mixed:#9a6700}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:var(--ink);background:#fff;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:2px 0 14px;line-height:1.25}
h2{font-size:20px;margin:36px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h2.small{font-size:14px;margin:14px 0 6px;border:0;padding:0;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
h3{font-size:16px;margin:24px 0 8px}
h4{font-size:14px;margin:0 0 6px}
.kicker{margin:0;color:var(--muted);text-transform:uppercase;letter-spacing:.08em;font-size:12px;font-weight:600}
.muted{color:var(--muted)}
.note{color:var(--muted);font-size:13px;margin:8px 0}
.note.warn{color:var(--mixed)}
code,pre{font-family:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--zebra);border:1px solid var(--line);border-radius:6px;
padding:8px 10px;margin:4px 0 10px;max-height:32em;overflow:auto}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:6px 18px;margin:0}
dl.facts div{min-width:0}
dl.facts dt{font-size:12px;color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
dl.config{grid-template-columns:repeat(auto-fill,minmax(150px,1fr))}
dl.config dd{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
nav{display:flex;flex-wrap:wrap;gap:4px 16px;margin:22px 0 0;padding:8px 0;border-top:1px solid var(--line);
border-bottom:1px solid var(--line);font-size:13px}
a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%;margin:8px 0;font-variant-numeric:tabular-nums}
table.compact{width:auto;min-width:min(100%,560px)}
th,td{padding:6px 10px;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
th{font-size:12.5px;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line)}
tbody tr:nth-child(even){background:var(--zebra)}
.num{text-align:right;white-space:nowrap}
.ci{color:var(--muted);font-size:12px;font-weight:400}
.sub{color:var(--muted);font-size:12px}
.mode{font-weight:600}
.up{color:var(--golden)} .down{color:var(--warning)}
.ok{color:var(--golden);font-weight:700}
.bad{color:var(--warning);font-weight:600}
.mixed{color:var(--mixed);font-weight:700}
figure{margin:12px 0}
svg.chart{display:block;max-width:100%;height:auto}
.fit code{font-size:13px}
details>summary{cursor:pointer}
details{margin:8px 0}
.split{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:16px;align-items:start}
.badge{display:inline-block;font-size:11.5px;font-weight:600;padding:1px 7px;border-radius:10px;margin-right:6px;
border:1px solid var(--line);background:var(--zebra);color:var(--muted)}
.badge.golden{background:var(--golden-bg);color:var(--golden);border-color:#aceebb}
.badge.warning{background:var(--warning-bg);color:var(--warning);border-color:#ffcecb}
article.exp{border:1px solid var(--line);border-left:4px solid var(--line);border-radius:6px;padding:8px 12px;
margin:8px 0;break-inside:avoid}
article.exp.golden{border-left-color:var(--golden)}
article.exp.warning{border-left-color:var(--warning)}
article.exp:target{box-shadow:0 0 0 3px #54aeff66}
.exp-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 4px}
.exp-head .id{margin-left:auto;color:var(--muted);font-size:11.5px}
.exp-body{margin:6px 0;white-space:pre-wrap;overflow-wrap:anywhere}
.exp-meta{margin:0;color:var(--muted);font-size:12px}
ul.examples{margin:4px 0;padding-left:18px}
ul.examples pre{margin:2px 0;max-height:12em}
.problems{border:1px solid var(--line);border-radius:6px;overflow:hidden}
.prow{display:grid;gap:10px;align-items:center;padding:5px 10px;min-width:0}
.prow>span{min-width:0}
.phead{background:var(--zebra);font-size:12.5px;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line)}
.phead span:nth-child(n+4),.prow .mark{text-align:center}
details.problem{margin:0;border-bottom:1px solid var(--line);border-left:3px solid transparent}
details.problem:nth-of-type(even)>summary{background:var(--zebra)}
details.problem.differ{border-left-color:var(--mixed)}
details.problem>summary{list-style:none}
details.problem>summary::-webkit-details-marker{display:none}
details.problem[open]>summary .caret{transform:rotate(90deg)}
details.problem:target>summary{outline:2px solid #54aeff}
.caret{display:inline-block;color:var(--muted);transition:transform .1s}
.pid{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}
.q{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.mark{font-size:15px}
.pbody{padding:6px 14px 14px 30px;background:#fff}
.label{font-size:12px;color:var(--muted);font-weight:600;margin-top:8px}
table.compare{font-size:13px}
table.compare code{overflow-wrap:anywhere}
.xref{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;margin-right:4px;
padding:0 4px;border-radius:4px;border:1px solid var(--line);white-space:nowrap}
a.xref.golden{color:var(--golden);background:var(--golden-bg)}
a.xref.warning{color:var(--warning);background:var(--warning-bg)}
code.xref{color:var(--muted)}
.attempt{border-top:1px dashed var(--line);padding-top:10px;margin-top:10px}
pre.reply{max-height:24em}
footer{margin-top:40px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:10px}
@media (max-width:760px){.split{grid-template-columns:1fr}main{padding:16px}}
@media print{
body{font-size:11px} main{max-width:none;padding:0} nav{display:none}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
section,figure,table,article.exp{break-inside:avoid-page} details.problem{break-inside:avoid}
pre{max-height:none;overflow:visible}
}
"""


def render_report(run_dir: Path, *, max_problems: int = MAX_PROBLEMS) -> str:
    """The report page for a run directory, as one self-contained HTML string.

    Raises InputError when the directory holds nothing to report or a file in it is malformed."""
    run = load_run(Path(run_dir))
    shown = _Experiences()
    sections: list[tuple[str, str]] = []
    parts: list[str] = []
    # The library section runs before the drill-down is rendered: it decides which experiences get anchors.
    any_retrieved = any(item.retrieved for item in run.items)
    library_html = _library(run, shown) if run.library is not None or any_retrieved else ""
    if run.results is not None:
        sections.append(("results", "Results"))
        parts.append(_results(run))
    if run.scaling is not None:
        sections.append(("scaling", "Scaling law"))
        parts.append(_scaling(run.scaling))
    if run.inherit is not None:
        sections.append(("inherit", "Inheritance"))
        parts.append(_inherit(run.inherit))
    if library_html:
        sections.append(("library", "Library"))
        parts.append(library_html)
    modes = [m.mode for m in run.results.results] if run.results is not None else []
    modes += [m for m in dict.fromkeys(i.mode for i in run.items) if m not in modes]
    drill = _drilldown(run, modes, shown, max_problems)
    if drill:
        sections.append(("items", "Per-item results"))
        parts.append(drill)

    title = " · ".join(t for t in _task_and_model(run) if t)
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    # Nothing may load from anywhere: the policy also stops anything that slipped past escaping from running.
    csp = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{script_hash}'"
    footer = (
        f"Generated by flexlearn {esc(__version__)} from {esc(run.directory)}. Prompts and replies are shortened "
        f"on this page where long; {ITEMS} holds them in full."
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>FLEX report{(' — ' + esc(title)) if title else ''}</title>"
        f"<style>{_CSS}</style></head>\n<body><main>"
        f"{_header(run)}{_nav(sections)}{''.join(parts)}<footer>{footer}</footer>"
        f"</main><script>{_SCRIPT}</script></body></html>\n"
    )


def write_report(run_dir: Path, out: Path | None = None, *, max_problems: int = MAX_PROBLEMS) -> Path:
    """Render the report for `run_dir` and write it atomically to `out` (default: run_dir/report.html; a
    directory gets report.html inside it). Returns the path written."""
    run_dir = Path(run_dir)
    page = render_report(run_dir, max_problems=max_problems)
    target = run_dir / REPORT if out is None else Path(out)
    if target.is_dir():
        target = target / REPORT
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a reader never sees half a page and a failure leaves no debris.
    # open(..., "x") rather than mkstemp: the page gets the usual umask permissions, not mkstemp's 0600.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            fh.write(page)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
