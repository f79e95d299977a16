"""How a wrong numeric answer relates to the right one, in words a small model can act on: the slips a glance at
two numbers misses ("-80.00" against "-80000000.0" is an amount given in millions; "5.50" against "0.06" a percent
for a ratio). The actor sees it beside a failed case's right answer."""

from __future__ import annotations

import math

from flexlearn.tasks.common import leading_number

# How far from a power of ten a ratio may be and still be called "about" one (998,000 is about 1,000 times 1,008).
_ABOUT = 0.15


def _number(text: str, *, whole: bool) -> float | None:
    """The number `text` opens with; with `whole`, only when it is nothing else."""
    number = leading_number(text)
    if number is None or (whole and text.strip().replace(",", "") != number):
        return None
    return float(number)


def scale_relation(wrong: str, right: str) -> str:
    """How the right answer relates to the wrong one when that is a power of ten or a flipped sign, the mistakes a
    reader misses in "-80.00" against "-80000000.0": "1,000,000 times the answer given", "about 1/100 of the answer
    given", "the answer given with the opposite sign". "" when either is not a number (the wrong one may be
    followed by its explanation) or they relate otherwise."""
    given, expected = _number(wrong, whole=False), _number(right, whole=True)
    if given is None or expected is None or given == 0 or expected == 0 or given == expected:
        return ""
    ratio = expected / given
    sign = " with the opposite sign" if ratio < 0 else ""
    power = round(math.log10(abs(ratio)))
    if power == 0:
        return "the answer given with the opposite sign" if abs(abs(ratio) - 1) < 1e-9 else ""
    off = abs(ratio) / 10.0**power
    if abs(off - 1) > _ABOUT:
        return ""
    about = "" if abs(off - 1) < 1e-9 else "about "
    factor = f"{10**power:,} times" if power > 0 else f"1/{10**-power:,} of"
    return f"{about}{factor} the answer given{sign}"
