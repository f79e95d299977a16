"""Formatting helpers shared by the report's sections. Every helper that returns markup escapes its text."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from flexlearn.experience import Level, Zone
from flexlearn.records import ITEMS
from flexlearn.report import svg
from flexlearn.report.svg import esc

LEVELS = tuple(str(level) for level in Level)
ZONES = tuple(str(zone) for zone in Zone)
FLEX_COLOR = svg.ACCENT
OTHER_COLOR = "#8c959f"


def pct(value: float | None) -> str:
    """A fraction as a percentage; a dash when unknown."""
    return "—" if value is None or not math.isfinite(value) else svg.percent(value)


def ci(low: float | None, high: float | None, fmt: Callable[[float], str] = pct) -> str:
    """A confidence interval as a muted " [low–high]" suffix; nothing when either end is unknown."""
    if low is None or high is None:
        return ""
    return f' <span class="ci">[{esc(fmt(low))}–{esc(fmt(high))}]</span>'


def integer(value: float) -> str:
    """A count with thousands separators."""
    return f"{value:,.0f}"


def per(total: float, n: int, digits: int = 1) -> str:
    """`total / n`; a dash when n is 0."""
    return f"{total / n:,.{digits}f}" if n else "—"


def duration(seconds: float | None) -> str:
    """Seconds as people read them: "42.0 s", "3 min 05 s", "2 h 10 min"."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def date(started: float | None) -> str:
    """A Unix time as a UTC date and minute."""
    if started is None:
        return "—"
    try:
        return datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return "—"


def clip(text: str, limit: int) -> tuple[str, int]:
    """Head and tail of a long text (the question usually sits at a prompt's end, the final answer at a reply's
    end), and how many characters were left out (0 when nothing was)."""
    if len(text) <= limit:
        return text, 0
    head = limit * 2 // 3
    tail = limit - head
    omitted = len(text) - limit
    return f"{text[:head]}\n\n[… {omitted:,} characters omitted …]\n\n{text[-tail:]}", omitted


def pre(text: str, limit: int, css: str = "") -> str:
    """A preformatted block of `text`, clipped to `limit` characters with a note saying where the rest is."""
    shown, omitted = clip(text, limit)
    note = (
        f'<p class="note">Truncated here: {len(text):,} characters, {omitted:,} left out. '
        f"The full text is in {ITEMS}.</p>"
        if omitted
        else ""
    )
    return f'<pre class="{css}">{esc(shown)}</pre>{note}' if text else '<p class="muted">(empty)</p>'


def one_line(text: str, limit: int = 140) -> str:
    """`text` with its whitespace collapsed, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def anchor(prefix: str, key: str) -> str:
    """A safe HTML id for an experience or problem id; ids with odd characters get a hash suffix so that two
    ids that clean up to the same text stay apart."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", key)
    if safe != key:
        safe += "-" + hashlib.sha1(key.encode()).hexdigest()[:6]
    return f"{prefix}-{safe}"


def plain(value: Any) -> str:
    """A configuration value as text: strings as they are, anything else as JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def flatten(data: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Nested settings as dotted keys: {"actor": {"temperature": 0}} -> ("actor.temperature", 0)."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric_from: int = 1, css: str = "") -> str:
    """A table of already-escaped cells; columns from `numeric_from` on are right-aligned numbers."""

    def cell(tag: str, i: int, text: str) -> str:
        return f"<{tag} class=num>{text}</{tag}>" if i >= numeric_from else f"<{tag}>{text}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def mode_color(mode: str) -> str:
    """Flex modes in the accent colour, the baselines in grey."""
    return FLEX_COLOR if mode.lower().startswith("flex") else OTHER_COLOR


def path_html(path: str) -> str:
    """A file path, escaped, that a browser may break after a separator but never inside a name."""
    return "<wbr>".join(esc(part) for part in re.split(r"(?<=[/\\])", path))
