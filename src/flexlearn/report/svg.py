"""Small inline-SVG charts for the HTML report: no plotting library, no fonts or scripts to fetch. (One file over
400 lines: the four charts share one set of scales, axes and escaping helpers.)

Each function returns one `<svg>` element as `Markup`, sized by its viewBox so that it scales to its container
and stays readable at 720 px wide; the report's templates insert it as it is. The drawing is Python (geometry
from numbers); text is never pasted into it by hand: labels come from user data (task names, library labels,
model names), so every element that carries text is built with `Markup(...).format(...)`, which escapes what it
is given, and the parts are joined with `Markup.join`, which escapes any plain string. Each chart carries a
`<title>` and `<desc>` for screen readers; `chart_id` must be unique within a page because those elements are
referenced by id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

WIDTH = 720
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
INK = "#1f2328"
MUTED = "#656d76"
GRID = "#d8dee4"
ACCENT = "#0969da"
GOLDEN = "#1a7f37"
WARNING = "#cf222e"


def _el(template: str, *args: object) -> Markup:
    """Markup from a template of our own (coordinates already formatted into it from numbers) with `{}` holes
    for text: whatever fills a hole is escaped."""
    return Markup(template).format(*args)


def percent(value: float) -> str:
    """0.4667 -> '46.7%'."""
    return f"{100 * value:.1f}%"


def number(value: float) -> str:
    """A metric value: three significant digits, no exponent for ordinary magnitudes."""
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a value with an optional confidence interval."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None
    color: str = ACCENT


@dataclass(frozen=True)
class Point:
    """One observation on a line chart, with an optional confidence interval."""

    x: float
    y: float
    low: float | None = None
    high: float | None = None


def _ci_text(low: float | None, high: float | None, fmt: Callable[[float], str]) -> str:
    """' (95% CI a–b)' for a chart's text description, or nothing without both bounds."""
    return f" (95% CI {fmt(low)}–{fmt(high)})" if low is not None and high is not None else ""


def _tick(fmt: Callable[[float], str], value: float) -> str:
    """An axis tick label: '20%' rather than '20.0%', since ticks are round numbers."""
    text = fmt(value)
    return text[:-3] + "%" if text.endswith(".0%") else text


def _fmt(value: float) -> str:
    """Coordinates with one decimal keep the markup short without visible rounding."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_width(text: str, size: float = 13) -> float:
    """A rough, generous width estimate (0.6 em a glyph, measured against DejaVu Sans, the widest common system
    sans), enough to size a label column without clipping."""
    return len(text) * size * 0.6


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next((m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw), 10 * power)
    start = math.floor(low / step + 1e-9) * step
    ticks = []
    value = start
    while value <= high + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high - step * 1e-6:
        ticks.append(round(value, 10))
    return ticks


def _domain(values: Sequence[float], *, floor: float | None, ceil: float | None) -> tuple[float, list[float]]:
    """Padded domain and ticks for a value axis; `floor`/`ceil` pin an end (0 and 1 for accuracies)."""
    lo = min([*values, floor] if floor is not None else values) if values else 0.0
    hi = max([*values, ceil] if ceil is not None else values) if values else 1.0
    ticks = nice_ticks(lo, hi)
    return ticks[0], ticks


def _svg_open(chart_id: str, height: float, title: str, desc: str) -> list[Markup]:
    return [
        _el(
            '<svg class="chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-labelledby="{}-t {}-d" '
            'font-family="{}" font-size="13" fill="{}">',
            WIDTH,
            _fmt(height),
            WIDTH,
            _fmt(height),
            chart_id,
            chart_id,
            FONT,
            INK,
        ),
        _el('<title id="{}-t">{}</title>', chart_id, title),
        _el('<desc id="{}-d">{}</desc>', chart_id, desc),
    ]


def bar_chart(
    bars: Sequence[Bar],
    *,
    chart_id: str,
    title: str,
    x_label: str,
    fmt: Callable[[float], str] = percent,
    domain: tuple[float, float] | None = None,
) -> Markup:
    """Horizontal bars with confidence-interval whiskers, one row per bar (accuracy per mode, per library).

    `domain` defaults to [0, 1] when every value and bound fits in it (accuracies), else to a padded range that
    includes 0, so that bars always grow from a visible zero line."""
    bounds = [v for b in bars for v in (b.value, b.low, b.high) if v is not None and math.isfinite(v)]
    if domain is None:
        fits_unit = all(0.0 <= v <= 1.0 for v in bounds)
        lo, ticks = _domain(bounds, floor=0.0, ceil=1.0 if fits_unit else 0.0)
        hi = ticks[-1]
    else:
        lo, hi = domain
        ticks = [t for t in nice_ticks(lo, hi) if lo - 1e-9 <= t <= hi + 1e-9]
    # Labels longer than the column can hold are shortened; the full label stays in a <title> tooltip.
    max_chars = 36
    label_w = max(60.0, max((_text_width(_shorten(b.label, max_chars)) for b in bars), default=60.0))
    left, right, top, row_h = label_w + 20, 84.0, 30.0, 34.0
    plot_w = WIDTH - left - right
    height = top + row_h * max(1, len(bars)) + 46

    def sx(v: float) -> float:
        return left + (min(max(v, lo), hi) - lo) / (hi - lo) * plot_w

    desc = "; ".join(f"{b.label}: {fmt(b.value)}{_ci_text(b.low, b.high, fmt)}" for b in bars)
    parts = _svg_open(chart_id, height, title, desc or "no data")
    bottom = top + row_h * max(1, len(bars))
    for t in ticks:
        x = _fmt(sx(t))
        parts.append(Markup(f'<line x1="{x}" y1="{_fmt(top - 6)}" x2="{x}" y2="{_fmt(bottom)}" stroke="{GRID}"/>'))
        parts.append(
            _el(f'<text x="{x}" y="{_fmt(bottom + 17)}" text-anchor="middle" fill="{MUTED}">{{}}</text>', _tick(fmt, t))
        )
    zero = _fmt(sx(0.0))
    parts.append(Markup(f'<line x1="{zero}" y1="{_fmt(top - 6)}" x2="{zero}" y2="{_fmt(bottom)}" stroke="{MUTED}"/>'))
    for i, b in enumerate(bars):
        y = top + i * row_h
        mid = y + row_h / 2
        x0, x1 = sorted((sx(0.0), sx(b.value)))
        label = _shorten(b.label, max_chars)
        tooltip = _el("<title>{}</title>", b.label) if label != b.label else Markup()
        parts.append(
            _el(f'<text x="{_fmt(left - 10)}" y="{_fmt(mid + 4.5)}" text-anchor="end">{{}}{{}}</text>', tooltip, label)
        )
        parts.append(
            _el(
                f'<rect x="{_fmt(x0)}" y="{_fmt(y + 7)}" width="{_fmt(max(x1 - x0, 1.0))}" '
                f'height="{_fmt(row_h - 14)}" fill="{{}}" fill-opacity="0.85" rx="2"/>',
                b.color,
            )
        )
        end = x1
        if b.low is not None and b.high is not None:
            wl, wh = sx(b.low), sx(b.high)
            parts.append(
                Markup(
                    f'<path d="M{_fmt(wl)} {_fmt(mid)}H{_fmt(wh)}M{_fmt(wl)} {_fmt(mid - 6)}V{_fmt(mid + 6)}'
                    f'M{_fmt(wh)} {_fmt(mid - 6)}V{_fmt(mid + 6)}" stroke="{INK}" stroke-width="1.5" fill="none"/>'
                )
            )
            end = max(end, wh)
        parts.append(
            _el(f'<text x="{_fmt(end + 6)}" y="{_fmt(mid + 4.5)}" font-weight="600">{{}}</text>', fmt(b.value))
        )
    parts.append(
        _el(
            f'<text x="{_fmt(left + plot_w / 2)}" y="{_fmt(bottom + 38)}" text-anchor="middle" fill="{MUTED}">'
            "{}</text>",
            x_label,
        )
    )
    parts.append(Markup("</svg>"))
    return Markup("\n").join(parts)


def _log1p_ticks(sizes: Sequence[float], scale: Callable[[float], float], min_gap: float) -> list[float]:
    """Tick positions labelled with real sizes on a ln(1+x) axis.

    With a handful of distinct sizes (the usual scaling sweep: 0, 25, 50, 100, ...) the ticks sit on the data;
    otherwise on 0 and 1-2-5 multiples of powers of ten. Ticks closer than `min_gap` pixels to an already kept
    one are dropped (0 and the largest size are kept first so the axis ends are always labelled)."""
    distinct = sorted(set(sizes))
    if len(distinct) <= 12:
        candidates = distinct
    else:
        top = max(distinct)
        candidates = [0.0]
        power = 1.0
        while power <= top:
            candidates += [m * power for m in (1, 2, 5) if m * power <= top]
            power *= 10
    order = sorted(candidates, key=lambda v: (v not in (candidates[0], candidates[-1]), v))
    kept: list[float] = []
    for value in order:
        if all(abs(scale(value) - scale(k)) >= min_gap for k in kept):
            kept.append(value)
    return sorted(kept)


def _size_label(value: float) -> str:
    if value >= 10_000 and value % 1000 == 0:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2g}"


def scaling_chart(
    points: Sequence[Point],
    *,
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    fit: Callable[[float], float] | None = None,
    fit_label: str = "",
    fmt: Callable[[float], str] = percent,
) -> Markup:
    """A line chart of y against x on a ln(1+x) axis (so size 0 has a place), with CI error bars and an optional
    fitted curve drawn as a dashed line. Tick labels show real x values."""
    pts = sorted((p for p in points if math.isfinite(p.x) and math.isfinite(p.y) and p.x >= 0), key=lambda p: p.x)
    left, right, top, bottom_pad = 70.0, 24.0, 34.0, 54.0
    plot_h = 300.0
    plot_w = WIDTH - left - right
    height = top + plot_h + bottom_pad
    x_max = max((p.x for p in pts), default=1.0)
    t_max = math.log1p(x_max) or 1.0
    ys = [v for p in pts for v in (p.y, p.low, p.high) if v is not None and math.isfinite(v)]
    fitted: list[tuple[float, float]] = []
    if fit is not None and pts:
        # Sampled evenly on the transformed axis, where a fit of the form a + b ln(1+x) is a straight line.
        for i in range(41):
            x = math.expm1(t_max * i / 40)
            y = fit(x)
            if math.isfinite(y):
                fitted.append((x, y))
        ys += [y for _, y in fitted]
    if ys:
        unit = all(0.0 <= v <= 1.0 for v in ys)
        pad = max(0.02, (max(ys) - min(ys)) * 0.08)
        lo, hi = min(ys) - pad, max(ys) + pad
        if unit:
            lo, hi = max(0.0, lo), min(1.0, hi)
    else:
        lo, hi = 0.0, 1.0
    y_ticks = nice_ticks(lo, hi)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    inset = 16.0  # keeps the size-0 point and its error bar off the y axis line

    def sx(x: float) -> float:
        return left + inset + math.log1p(max(x, 0.0)) / t_max * (plot_w - inset)

    def sy(y: float) -> float:
        return top + plot_h - (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo) * plot_h

    desc = "; ".join(f"size {_size_label(p.x)}: {fmt(p.y)}{_ci_text(p.low, p.high, fmt)}" for p in pts)
    if fit_label:
        desc += f". Fit: {fit_label}"
    parts = _svg_open(chart_id, height, title, desc or "no data")
    base = top + plot_h
    for t in y_ticks:
        ty = _fmt(sy(t))
        parts.append(
            Markup(f'<line x1="{_fmt(left)}" y1="{ty}" x2="{_fmt(left + plot_w)}" y2="{ty}" stroke="{GRID}"/>')
        )
        parts.append(
            _el(
                f'<text x="{_fmt(left - 8)}" y="{_fmt(sy(t) + 4.5)}" text-anchor="end" fill="{MUTED}">{{}}</text>',
                _tick(fmt, t),
            )
        )
    for t in _log1p_ticks([p.x for p in pts] or [0.0, 1.0], sx, min_gap=34.0):
        tx = _fmt(sx(t))
        parts.append(Markup(f'<line x1="{tx}" y1="{_fmt(base)}" x2="{tx}" y2="{_fmt(base + 5)}" stroke="{MUTED}"/>'))
        parts.append(
            _el(f'<text x="{tx}" y="{_fmt(base + 19)}" text-anchor="middle" fill="{MUTED}">{{}}</text>', _size_label(t))
        )
    parts.append(
        Markup(f'<path d="M{_fmt(left)} {_fmt(top)}V{_fmt(base)}H{_fmt(left + plot_w)}" stroke="{MUTED}" fill="none"/>')
    )
    if fitted:
        d = "M" + "L".join(f"{_fmt(sx(x))} {_fmt(sy(y))}" for x, y in fitted)
        parts.append(Markup(f'<path d="{d}" stroke="{MUTED}" stroke-width="1.5" stroke-dasharray="6 4" fill="none"/>'))
    for p in pts:
        if p.low is not None and p.high is not None:
            x, yl, yh = sx(p.x), sy(p.low), sy(p.high)
            parts.append(
                Markup(
                    f'<path d="M{_fmt(x)} {_fmt(yl)}V{_fmt(yh)}M{_fmt(x - 5)} {_fmt(yl)}H{_fmt(x + 5)}'
                    f'M{_fmt(x - 5)} {_fmt(yh)}H{_fmt(x + 5)}" stroke="{ACCENT}" stroke-width="1.5" fill="none"/>'
                )
            )
    if pts:
        d = "M" + "L".join(f"{_fmt(sx(p.x))} {_fmt(sy(p.y))}" for p in pts)
        parts.append(Markup(f'<path d="{d}" stroke="{ACCENT}" stroke-width="2" fill="none"/>'))
    for p in pts:
        parts.append(
            _el(
                f'<circle cx="{_fmt(sx(p.x))}" cy="{_fmt(sy(p.y))}" r="4.5" fill="{ACCENT}" stroke="#fff" '
                'stroke-width="1.5"><title>size {}: {}</title></circle>',
                _size_label(p.x),
                fmt(p.y),
            )
        )
    # Legend, top left inside the plot: what the solid and dashed lines are.
    lx, ly = left + 12, top + 8
    parts.append(Markup(f'<path d="M{_fmt(lx)} {_fmt(ly)}h22" stroke="{ACCENT}" stroke-width="2"/>'))
    parts.append(Markup(f'<circle cx="{_fmt(lx + 11)}" cy="{_fmt(ly)}" r="3.5" fill="{ACCENT}"/>'))
    parts.append(Markup(f'<text x="{_fmt(lx + 30)}" y="{_fmt(ly + 4.5)}">observed (95% CI)</text>'))
    if fitted:
        parts.append(
            Markup(
                f'<path d="M{_fmt(lx)} {_fmt(ly + 20)}h22" stroke="{MUTED}" stroke-width="1.5" stroke-dasharray="6 4"/>'
            )
        )
        parts.append(_el(f'<text x="{_fmt(lx + 30)}" y="{_fmt(ly + 24.5)}">{{}}</text>', fit_label or "fit"))
    parts.append(
        _el(
            f'<text x="{_fmt(left + plot_w / 2)}" y="{_fmt(base + 42)}" text-anchor="middle" fill="{MUTED}">'
            "{}</text>",
            x_label,
        )
    )
    parts.append(
        _el(
            f'<text transform="translate(16 {_fmt(top + plot_h / 2)}) rotate(-90)" text-anchor="middle" '
            f'fill="{MUTED}">{{}}</text>',
            y_label,
        )
    )
    parts.append(Markup("</svg>"))
    return Markup("\n").join(parts)


def composition_chart(
    counts: Mapping[str, Mapping[str, int]],
    *,
    chart_id: str,
    title: str,
    levels: Sequence[str] = ("principle", "pattern", "case"),
    colors: Mapping[str, str] | None = None,
) -> Markup:
    """Grouped vertical bars: one group per level, one bar per zone (golden green, warning red by default),
    each labelled with its count."""
    colors = {"golden": GOLDEN, "warning": WARNING, **(colors or {})}
    zones = list(counts)
    extra_levels = sorted({lv for z in zones for lv in counts[z]} - set(levels))
    all_levels = [*levels, *extra_levels]
    top_value = max((counts[z].get(lv, 0) for z in zones for lv in all_levels), default=0)
    # Counts are whole numbers: a step below 1 (small libraries) would label the axis 0.5, 1.5, ...
    rough = nice_ticks(0, max(top_value, 1), count=4)
    step = max(1, math.ceil(rough[1] - rough[0]))
    y_hi = float(step * math.ceil(max(top_value, 1) / step))
    ticks = [float(t) for t in range(0, int(y_hi) + 1, step)]
    left, right, top, plot_h = 52.0, 24.0, 40.0, 220.0
    plot_w = WIDTH - left - right
    height = top + plot_h + 56
    base = top + plot_h

    def sy(v: float) -> float:
        return base - v / y_hi * plot_h

    desc = "; ".join(f"{z} {lv}: {counts[z].get(lv, 0)}" for z in zones for lv in all_levels)
    parts = _svg_open(chart_id, height, title, desc or "empty library")
    for t in ticks:
        y = _fmt(sy(t))
        parts.append(Markup(f'<line x1="{_fmt(left)}" y1="{y}" x2="{_fmt(left + plot_w)}" y2="{y}" stroke="{GRID}"/>'))
        parts.append(
            Markup(
                f'<text x="{_fmt(left - 8)}" y="{_fmt(sy(t) + 4.5)}" text-anchor="end" fill="{MUTED}">{int(t)}</text>'
            )
        )
    group_w = plot_w / max(1, len(all_levels))
    bar_w = min(64.0, group_w * 0.7 / max(1, len(zones)))
    for g, level in enumerate(all_levels):
        centre = left + group_w * (g + 0.5)
        first = centre - bar_w * len(zones) / 2
        for i, zone in enumerate(zones):
            value = counts[zone].get(level, 0)
            x = first + i * bar_w
            parts.append(
                _el(
                    f'<rect x="{_fmt(x + 2)}" y="{_fmt(sy(value))}" width="{_fmt(bar_w - 4)}" '
                    f'height="{_fmt(base - sy(value))}" fill="{{}}" fill-opacity="0.85" rx="2">'
                    "<title>{} {}: {}</title></rect>",
                    colors.get(zone, ACCENT),
                    zone,
                    level,
                    value,
                )
            )
            parts.append(
                _el(
                    f'<text x="{_fmt(x + bar_w / 2)}" y="{_fmt(sy(value) - 5)}" text-anchor="middle" '
                    'font-weight="600">{}</text>',
                    value,
                )
            )
        parts.append(_el(f'<text x="{_fmt(centre)}" y="{_fmt(base + 19)}" text-anchor="middle">{{}}</text>', level))
    parts.append(
        Markup(
            f'<line x1="{_fmt(left)}" y1="{_fmt(base)}" x2="{_fmt(left + plot_w)}" y2="{_fmt(base)}" stroke="{MUTED}"/>'
        )
    )
    lx = left + 8
    for zone in zones:
        parts.append(
            _el(f'<rect x="{_fmt(lx)}" y="10" width="12" height="12" fill="{{}}" rx="2"/>', colors.get(zone, ACCENT))
        )
        parts.append(_el(f'<text x="{_fmt(lx + 18)}" y="20.5">{{}}</text>', zone))
        lx += 30 + _text_width(zone)
    parts.append(
        Markup(
            f'<text x="{_fmt(left + plot_w / 2)}" y="{_fmt(base + 42)}" text-anchor="middle" fill="{MUTED}">'
            "level (principle = most general, case = most concrete)</text>"
        )
    )
    parts.append(
        Markup(
            f'<text transform="translate(16 {_fmt(top + plot_h / 2)}) rotate(-90)" text-anchor="middle" '
            f'fill="{MUTED}">experiences</text>'
        )
    )
    parts.append(Markup("</svg>"))
    return Markup("\n").join(parts)
