"""GSM8K grade-school word problems: the answer is one number, compared numerically."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import MAX_PREC, Context, Decimal
from pathlib import Path

from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.common import answer_is, final_answer_line, last_boxed, last_number, numbers
from flexlearn.tasks.loader import load_problems

_MARKER = "####"
_TOLERANCE = Decimal("1e-6")
# Subtraction and normalization are exact in this context; the default 28 digits would round long numbers.
_EXACT = Context(prec=MAX_PREC)

# `####` followed, on its line or alone on the next, by a number (maybe after `$`, a sign or Markdown emphasis);
# captures that line. Requiring the number keeps Markdown headings ("#### Step 2") from counting as the marker.
# "#### 5 + 3 = 8" means 8, so callers take the line's last number.
_MARKED_NUMBER = re.compile(r"####[^\S\n]*\n?[^\S\n]*([*_`$\\(\-\u2212]*\s*\.?\d[^\n]*)")

# GSM8K's calculator annotations, "48/2 = <<48/2=24>>24": noise in a worked example shown to a model.
_CALCULATOR = re.compile(r"<<[^<>]*>>")


class Gsm8kTask:
    """GSM8K-style problems: JSONL with "question" and "answer", the answer ending in `#### <number>`.

    An answer without `####` must be a single number (e.g. `72`, `"$1,200"`). The worked solution before `####`,
    when there is one, is kept in `Problem.meta["solution"]` (calculator annotations removed).
    """

    name = "gsm8k"
    answer_format = "End your reply with a last line of the form: #### NUMBER (just the number, no units)"

    def load(self, path: str | Path) -> list[Problem]:
        """Read a JSONL file. Raises InputError naming the file and line on bad input, including an answer
        with no number to compare against."""
        problems = load_problems(path, check=_check_reference)
        for problem in problems:
            solution, marker, _ = problem.answer.rpartition(_MARKER)
            if marker and solution.strip():
                problem.meta["solution"] = _CALCULATOR.sub("", solution).strip()
        return problems

    def render(self, problem: Problem) -> str:
        """The question text as is."""
        return problem.question

    def extract_answer(self, reply: str) -> str | None:
        """The number after the last `####`, else in the last `\\boxed{}`, else on the last "Final answer:" line,
        else the first number after the last "the answer is", else the last number in the reply; written plainly
        ("$1,200.00" -> "1200"). None when there is none."""
        for candidate in _candidates(reply):
            value = _to_decimal(candidate)
            if value is not None:
                return _plain(value)
        return None

    def score(self, reply: str, problem: Problem) -> Score:
        """1.0 when the reply's number equals the reference number (within 1e-6). Never raises."""
        reference = reference_number(problem.answer)
        extracted = self.extract_answer(reply)
        if extracted is None:
            return Score(correct=False, value=0.0, extracted=None, detail="no number found in the reply")
        if reference is None:
            return Score(correct=False, value=0.0, extracted=extracted, detail="the reference holds no number")
        if _EXACT.subtract(Decimal(extracted), reference).copy_abs() <= _TOLERANCE:
            return Score(correct=True, value=1.0, extracted=extracted, detail="equal to the reference")
        return Score(
            correct=False, value=0.0, extracted=extracted, detail=f"differs from the reference {_plain(reference)}"
        )

    def format_answer(self, problem: Problem) -> str:
        """`#### <reference number>`, the way a correct reply ends."""
        reference = reference_number(problem.answer)
        return f"{_MARKER} {_plain(reference) if reference is not None else problem.answer.strip()}"


def reference_number(answer: str) -> Decimal | None:
    """The number a GSM8K answer states: the first after the last `####`, or, without `####`, the answer's only
    number. None when there is none (or, without `####`, more than one)."""
    _, marker, tail = answer.rpartition(_MARKER)
    found = numbers(tail)
    if marker:
        return _to_decimal(found[0]) if found else None
    return _to_decimal(found[0]) if len(found) == 1 else None


def _check_reference(problem: Problem) -> str | None:
    """The loader's per-problem check: the answer must state a number."""
    if reference_number(problem.answer) is None:
        return f"answer {problem.answer[-60:]!r} states no number: expected '#### <number>' or a lone number"
    return None


def _candidates(reply: str) -> Iterator[str | None]:
    """Where the final number may be, most explicit first; each is a number as text, or None."""
    marked = _MARKED_NUMBER.findall(reply)
    if marked:
        yield last_number(marked[-1])
    boxed = last_boxed(reply)
    if boxed is not None:
        yield last_number(boxed)
    line = final_answer_line(reply)
    if line is not None:
        yield last_number(line)
    stated = answer_is(reply)
    if stated is not None:
        # "The answer is 18 dollars (3 x 6)": the first number after "answer is" is the answer.
        found = numbers(stated)
        yield found[0] if found else None
    yield last_number(reply)


def _to_decimal(text: str | None) -> Decimal | None:
    """A number as `numbers` writes it (always valid Decimal syntax) as a Decimal; None for None."""
    return Decimal(text) if text is not None else None


def _plain(value: Decimal) -> str:
    """A number without exponent or trailing zeros: 18.00 -> "18", 1E+3 -> "1000"."""
    return format(_EXACT.normalize(value), "f")
