"""Reading mutant scores out of a model's reply.

The reply gives one line per mutant, `A42G: 0.73`, any real number, higher = fitter. Parsing is lenient: list
numbering, bullets, Markdown, tables, `A42G = 0.7`, `A42G -> 0.7`, several `A42G: 0.7, L50P: 0.2` on a line and
JSON (`{"A42G": 0.7}`) are read; lower case is accepted; text after the number is ignored; a mutant given twice takes
its last value (models reason first and list the answer last); mutants not in the batch are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

from flexlearn.tasks.protein.mutants import canonical_mutant

# A substitution in a reply, where lower case is accepted and a multiple mutant joins substitutions with ':'.
_REPLY_PART = r"[A-Za-z]\d+[A-Za-z]"
_REPLY_MUTANT = rf"{_REPLY_PART}(?::{_REPLY_PART})*"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# A mutant and its score. It must start a line or follow ',', ';', '{' or '[' (a list on one line, JSON), so
# "... unlike A42G, 42 is buried" in reasoning is not read; what may precede it there are bullets, a list number,
# a table's pipe and quotes. Between mutant and number: an optional parenthetical ("A42G (pos 42): 0.3"), then
# separators. A hyphen is a separator only before a space or '>' ("A42G - 0.3", "A42G -> 0.3"), else it is the
# number's minus sign. The number is atomic, so "0.3x" is no number rather than a "0" cut short.
_PREDICTION = re.compile(
    rf"""(?:^|(?<=[,;{{\[]))
    [^\S\n]*(?:[-+>|\u2022\u00b7]+[^\S\n]*)*
    (?:\(?\d{{1,3}}[^\S\n]*[.):|][^\S\n]*)?
    ["']?(?P<mutant>{_REPLY_MUTANT})(?!\w|:{_REPLY_PART})["']?
    [^\S\n]*(?:\([^()\n]*\))?
    (?:[^\S\n]|[:=|>\u2192\u2013\u2014]|-(?=[^\S\n]|>))*
    (?:(?:predicted[^\S\n]+)?(?:fitness|score)[^\S\n]*[:=]?[^\S\n]*)?
    (?P<value>(?>{_NUMBER}))(?!\w)""",
    re.MULTILINE | re.VERBOSE | re.IGNORECASE,
)
# Markdown emphasis and code marks, dropped before reading so "**A42G**: `0.7`" reads like "A42G: 0.7".
_MARKUP = str.maketrans("", "", "*`")


def parse_predictions(reply: str) -> dict[str, float]:
    """mutant (canonical, see `canonical_mutant`) -> score for every mutant score in a reply; a mutant given twice
    keeps its last value, the keys stay in order of first mention. Never raises."""
    predictions: dict[str, float] = {}
    for mutant, value in _predictions(reply):
        predictions[mutant] = value
    return predictions


def batch_predictions(reply: str, mutants: Sequence[str]) -> dict[str, float]:
    """The reply's scores for the batch's mutants, keyed as the batch writes them, in batch order."""
    read = parse_predictions(reply)
    return {m: read[key] for m in mutants if (key := canonical_mutant(m)) in read}


def _predictions(reply: str) -> Iterator[tuple[str, float]]:
    """(canonical mutant, score) pairs in reply order; numbers that are not finite are skipped."""
    # U+2212, the typographic minus, which float() does not read.
    text = reply.translate(_MARKUP).replace("\u2212", "-")
    for match in _PREDICTION.finditer(text):
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        if math.isfinite(value):
            yield canonical_mutant(match.group("mutant")), value
