"""Formatting helpers shared by the report's sections: numbers, dates and texts as plain strings. None of them
returns markup: the templates (`report/templates/`) place these strings and Jinja2's autoescape escapes them."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flexlearn.experience import Level, Zone
from flexlearn.report import svg

LEVELS = tuple(str(level) for level in Level)
ZONES = tuple(str(zone) for zone in Zone)
FLEX_COLOR = svg.ACCENT
OTHER_COLOR = "#8c959f"


def pct(value: float | None) -> str:
    """A fraction as a percentage; a dash when unknown."""
    return "—" if value is None or not math.isfinite(value) else svg.percent(value)


def ci(low: float | None, high: float | None, fmt: Callable[[float], str] = pct) -> tuple[str, str] | None:
    """A confidence interval's ends as text (the `ci` macro shows them as a muted " [low–high]"); None when either
    end is unknown."""
    if low is None or high is None:
        return None
    return fmt(low), fmt(high)


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


@dataclass(frozen=True)
class Clipped:
    """A text and what of it the page shows (the `pre` macro renders it, with a note when something was left
    out)."""

    text: str
    shown: str
    omitted: int


def clipped(text: str, limit: int) -> Clipped:
    """`text` clipped to `limit` characters, as `clip` does, keeping the full text's length for the note."""
    shown, omitted = clip(text, limit)
    return Clipped(text, shown, omitted)


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


def mode_color(mode: str) -> str:
    """Flex modes in the accent colour, the baselines in grey."""
    return FLEX_COLOR if mode.lower().startswith("flex") else OTHER_COLOR


def path_parts(path: str) -> list[str]:
    """A file path cut after each separator: the `path` macro joins the parts with <wbr>, so that a browser may
    break a long path after a separator but never inside a name."""
    return re.split(r"(?<=[/\\])", path)
