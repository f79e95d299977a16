"""Answer-extraction helpers shared by the built-in tasks.

Every helper takes a model reply (or a piece of one) and returns a string or None; none of them raise on odd input.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

# `\boxed{...}` and `\fbox{...}`; whitespace before the brace is legal LaTeX and models do write it.
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")

# A plain decimal number. Thousands groups must have exactly three digits so a list such as "1,2,3" reads as
# three numbers rather than 123. The look-behind keeps the minus of "5-3" and the digits of "x2" or "3.14.15"
# tails from being read as part of a number.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+")

# LaTeX thousands separators and the Unicode minus, which the plain-number pattern would otherwise split on.
_NUMBER_SPELLINGS = (("{,}", ","), ("\\,", ","), ("\u2212", "-"))

_DEFAULT_LABELS = ("final answer",)

# Markdown emphasis and code marks that models wrap around labels and answers ("**Final answer:** 42").
_MARKUP = "*_`"


def last_boxed(text: str) -> str | None:
    """The content of the last complete `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces balanced.

    Escaped braces (`\\{`, `\\}`) do not count towards the balance, so `\\boxed{\\{1, 2\\}}` yields `\\{1, 2\\}`.
    A box whose braces never close (a reply cut off mid-answer) or that is empty (a reply quoting the instruction
    "put the answer in \\boxed{}") is skipped in favour of an earlier one.
    """
    for match in reversed(list(_BOX_OPEN.finditer(text))):
        content = _balanced(text, match.end())
        if content is not None and content.strip():
            return content.strip()
    return None


def _balanced(text: str, start: int) -> str | None:
    """The text from `start` up to the brace closing the one just before `start`, or None if it never closes."""
    depth = 1
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # skip the escaped character, so `\{` and `\}` are literal
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def final_answer_line(text: str, labels: Sequence[str] = _DEFAULT_LABELS) -> str | None:
    """What follows the last `<label>:` in `text` (case-insensitive), e.g. "Final answer: 42" -> "42".

    Markdown emphasis around the label or the answer is dropped. When the label ends its line ("Final answer:"
    then the answer below), the next non-empty line is taken, and when that line only opens a display-math block
    ("\\[" or "$$"), the block through its closing line. None when no line carries a label.
    """
    alternatives = "|".join(r"\s+".join(map(re.escape, label.split())) for label in labels)
    pattern = re.compile(rf"\b(?:{alternatives})[\s{re.escape(_MARKUP)}]*[:：]", re.IGNORECASE)
    lines = text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        matches = list(pattern.finditer(lines[index]))
        if not matches:
            continue
        answer = strip_markup(lines[index][matches[-1].end() :])
        rest = lines[index + 1 :]
        if not answer:
            below = next((i for i, line in enumerate(rest) if strip_markup(line)), None)
            if below is None:
                return None
            answer, rest = strip_markup(rest[below]), rest[below + 1 :]
        return _through_display_close(answer, rest) or None
    return None


# Display-math openers a model puts alone on a line, with the block's answer below ("Final answer:", "\\[",
# "\\boxed{5.00}", "\\]"), and the line that closes each.
_DISPLAY_CLOSE = {"\\[": "\\]", "$$": "$$", "\\(": "\\)"}


def _through_display_close(answer: str, below: Sequence[str]) -> str:
    """`answer`, or, when it is a lone display-math opener, the block it opens through its closing line, joined on
    one line ("\\[ \\boxed{5.00} \\]"); an opener never closed is kept as it is."""
    close = _DISPLAY_CLOSE.get(answer)
    if close is None:
        return answer
    block = [answer]
    for line in below:
        block.append(line.strip())
        if line.strip().endswith(close):
            return " ".join(part for part in block if part)
    return answer


# "The answer is 42", "the final answer is: **Paris**", "So the answer would be 18." A sentence's end stops it.
_ANSWER_IS = re.compile(
    r"\b(?:final\s+)?answer\s+(?:is|would\s+be|will\s+be|=)\s*[:：]?\s*(?P<answer>[^\n]+?)\s*(?:[.!;](?:\s|$)|$)",
    re.IGNORECASE | re.MULTILINE,
)


def answer_is(text: str) -> str | None:
    """What follows the last "answer is" (or "final answer is", "answer would be") in `text`, up to the end of its
    sentence, Markdown emphasis dropped; None when no sentence says so. Chat models end this way unprompted."""
    matches = list(_ANSWER_IS.finditer(text))
    for match in reversed(matches):
        answer = strip_markup(match.group("answer"))
        if answer:
            return answer
    return None


def strip_markup(text: str) -> str:
    """`text` without surrounding whitespace and Markdown emphasis/code marks."""
    return text.strip(string.whitespace + _MARKUP)


def strip_math_delimiters(text: str) -> str:
    """`text` without one pair of surrounding math delimiters: `$...$`, `$$...$$`, `\\(...\\)` or `\\[...\\]`."""
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text


def numbers(text: str) -> list[str]:
    """Every plain number in `text`, in order, with thousands commas removed ("$1,234.50" -> "1234.50").

    Currency signs, percent signs and units around a number are ignored. LaTeX thousands separators (`1{,}000`,
    `1\\,000`) and the Unicode minus sign are understood.
    """
    for spelling, plain in _NUMBER_SPELLINGS:
        text = text.replace(spelling, plain)
    return [match.group().replace(",", "") for match in _NUMBER.finditer(text)]


def last_number(text: str) -> str | None:
    """The last plain number in `text` (see `numbers`), or None."""
    found = numbers(text)
    return found[-1] if found else None


def leading_number(text: str) -> str | None:
    """The plain number `text` opens with, leading whitespace aside (see `numbers`: "-80.00 (in millions)" ->
    "-80.00"), or None when it opens with anything else."""
    text = text.lstrip()
    for spelling, plain in _NUMBER_SPELLINGS:
        text = text.replace(spelling, plain)
    match = _NUMBER.match(text)
    return match.group().replace(",", "") if match else None


def first_number(text: str) -> str | None:
    """The first plain number in `text` (see `numbers`), or None."""
    found = numbers(text)
    return found[0] if found else None


def extract_final(reply: str, *, trailing: str = ".,; \t") -> str | None:
    """The last `\\boxed{}` content, else what follows "Final answer:", else the last number; or None.

    From a "Final answer:" line, math delimiters and the characters in `trailing` are stripped from the end:
    "Final answer: 70." ends a sentence, and "70." would not parse as 70."""
    boxed = last_boxed(reply)
    if boxed is not None:
        return boxed
    line = final_answer_line(reply)
    if line is not None:
        return strip_math_delimiters(line.rstrip(trailing)).rstrip(trailing) or None
    return last_number(reply)
