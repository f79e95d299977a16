"""Competition math (MATH-500, AIME): LaTeX answers compared for mathematical equivalence with math-verify.

Timeouts. math-verify bounds its work with `signal.alarm`, which only works in the main thread; in any other
thread it raises. So its limits are passed only when scoring runs in the main thread and are switched off
elsewhere. Off the main thread nothing can interrupt a runaway computation, and big-integer work in C holds
the GIL, freezing every thread (comparing 2^{2^{100}} with 5 never returns). So, in every thread, the parsed
expressions are first screened for what blows up: exact numbers too large (powers, factorials, roots of big
integers) and powers of sums too large to expand. With the length cap on answers, what remains off the main
thread is ordinary symbolic simplification, which is pure Python: slow at worst, never freezing other threads.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.common import extract_final, last_boxed, strip_math_delimiters
from flexlearn.tasks.loader import load_problems

if TYPE_CHECKING:
    from sympy import Basic

# Longer "answers" are almost always a runaway reply, and parsing cost grows with length.
MAX_ANSWER_CHARS = 1000

# Stripped from the end of a "Final answer:" line before parsing.
_SENTENCE_END = ".,; \t"

# Limits of the pre-comparison screen. Exact numbers built by powers and factorials may total at most this many
# bits: sympy factors integers under roots and tests the cofactor for primality, which takes ~2 s for one of
# 10,000 bits and minutes beyond (and a single modular power can hold the GIL for seconds). Real answers are far
# smaller: 2**4096 is 1,234 digits. A power of a sum, expanded, may have at most this many terms ((x+1)**300
# takes about half a second).
_MAX_EXACT_BITS = 5_000
_MAX_EXPANSION_TERMS = 300
# Two plain decimal numbers are compared exactly, without math-verify: the answer of most word problems, the most
# common comparison, and the one a learning run makes at every attempt. Up to six decimals, math-verify's own
# rounding, the result is the same (tests compare the two); anything else goes to math-verify, imported on first
# use (with sympy it takes about half a second, which a run on plain numbers never pays).
_PLAIN_NUMBER = re.compile(r"[-+]?\d+(?:\.\d{1,6})?")


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once when its timeouts are off; here that is deliberate and covered by the screen."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _logger_name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger_name).addFilter(_DropTimeoutDisabledWarning())


class MathTask:
    """LaTeX-answer math problems, scored by equivalence (`\\frac{1}{2}` == `0.5` == `\\dfrac12`).

    Loads JSONL with "question" (or "problem", as in MATH-500 and AIME25) and "answer" (a string or a number).
    `timeout_seconds` bounds each parse and each comparison when scoring runs in the main thread.
    """

    name = "math"
    answer_format = "Put the final answer in \\boxed{}, on the last line: Final answer: \\boxed{ANSWER}"

    def __init__(self, timeout_seconds: int = 5) -> None:
        self.timeout_seconds = timeout_seconds

    def load(self, path: str | Path) -> list[Problem]:
        """Read a JSONL file of problems. Raises InputError naming the file and line on bad input."""
        return load_problems(path, question_key=("question", "problem"))

    def render(self, problem: Problem) -> str:
        """The question text as is."""
        return problem.question

    def extract_answer(self, reply: str) -> str | None:
        """The last `\\boxed{}` content, else what follows "Final answer:", else the last number; or None."""
        return extract_final(reply, trailing=_SENTENCE_END)

    def score(self, reply: str, problem: Problem) -> Score:
        """1.0 when the reply's final answer is equivalent to the reference. Never raises: any failure in parsing
        or comparing scores 0 with the reason in `detail`. Safe to call from any thread."""
        extracted = self.extract_answer(reply)
        if extracted is None:
            return Score(correct=False, value=0.0, extracted=None, detail="no final answer found in the reply")
        if len(extracted) > MAX_ANSWER_CHARS:
            return Score(
                correct=False,
                value=0.0,
                extracted=extracted[:MAX_ANSWER_CHARS],
                detail=f"answer not compared: {len(extracted)} characters, over the {MAX_ANSWER_CHARS} limit",
            )
        try:
            correct, detail = self._compare(problem.answer, extracted)
        # math-verify and sympy can raise nearly anything on odd input; math-verify's TimeoutException, imported
        # only with math-verify, is a BaseException.
        except BaseException as exc:
            if not isinstance(exc, Exception) and not _is_timeout(exc):
                raise
            return Score(
                correct=False, value=0.0, extracted=extracted, detail=f"comparison failed: {type(exc).__name__}"
            )
        return Score(correct=correct, value=1.0 if correct else 0.0, extracted=extracted, detail=detail)

    def format_answer(self, problem: Problem) -> str:
        """The reference in a box, the way a correct reply ends."""
        return f"\\boxed{{{_answer_core(problem.answer)}}}"

    def _compare(self, reference: str, answer: str) -> tuple[bool, str]:
        """(equivalent?, why) for a reference and an extracted answer."""
        reference_core, plain = _answer_core(reference).strip(), answer.strip()
        if _PLAIN_NUMBER.fullmatch(reference_core) and _PLAIN_NUMBER.fullmatch(plain):
            if Decimal(reference_core) == Decimal(plain):
                return True, "equivalent to the reference"
            return False, "not equivalent to the reference"
        on_main_thread = os.name == "posix" and threading.current_thread() is threading.main_thread()
        timeout = self.timeout_seconds if on_main_thread else None
        # Both sides go through math-verify's \boxed{} reader, which takes the whole content as one expression.
        gold = _parse_boxed(_answer_core(reference), timeout)
        if not gold:
            return False, "could not parse the reference answer"
        predicted = _parse_boxed(answer, timeout)
        if not predicted:
            return False, "could not parse the answer"
        for side, parsed in (("answer", predicted), ("reference", gold)):
            problem = _too_costly(parsed)
            if problem is not None:
                return False, f"{side} not compared: {problem}"
        if verify(gold, predicted, timeout_seconds=timeout):
            return True, "equivalent to the reference"
        return False, "not equivalent to the reference"


# Parses remembered by `_parse_boxed`, most recently used last.
_PARSED: OrderedDict[tuple[str, int | None], tuple[object, ...]] = OrderedDict()
_PARSED_MAX = 1024
_parsed_lock = threading.Lock()


def _parse_boxed(content: str, timeout: int | None) -> list[object]:
    """math-verify's parse of `\\boxed{content}`, remembered: a problem's reference is parsed again at every
    attempt, and a wrong answer is often given again, each parse 0.4 ms of CPU or (much) more, on math problems
    the largest cost of a learning run's own after HTTP. Parsing is deterministic and sympy's expressions are
    immutable. Only a parse that found something is remembered: an empty one may be a timeout, which a later call
    must be free to retry; and a call with timeouts never reuses one made without them."""
    key = (content, timeout)
    with _parsed_lock:
        found = _PARSED.get(key)
        if found is not None:
            _PARSED.move_to_end(key)
            return list(found)
    parsed = parse(f"\\boxed{{{content}}}", parsing_timeout=timeout)
    if parsed:
        with _parsed_lock:
            _PARSED[key] = tuple(parsed)
            if len(_PARSED) > _PARSED_MAX:
                _PARSED.popitem(last=False)
    return parsed


def parse(text: str, **kwargs: Any) -> list[Any]:
    """math-verify's `parse`, imported on first use."""
    from math_verify import parse as parse_

    return parse_(text, **kwargs)


def verify(gold: list[Any], target: list[Any], **kwargs: Any) -> bool:
    """math-verify's `verify`, imported on first use."""
    from math_verify import verify as verify_

    return verify_(gold, target, **kwargs)


def _is_timeout(exc: BaseException) -> bool:
    """Whether `exc` is math-verify's TimeoutException (only ever raised once math-verify is imported)."""
    errors = sys.modules.get("math_verify.errors")
    return errors is not None and isinstance(exc, errors.TimeoutException)


def _answer_core(answer: str) -> str:
    """A reference answer without `$...$` around it or a `\\boxed{}` of its own."""
    answer = strip_math_delimiters(answer)
    return last_boxed(answer) or answer


def _too_costly(parsed: Iterable[object]) -> str | None:
    """Why comparing these parsed expressions could run away, or None when they look safe.

    Nodes are visited innermost first, so an exponent or argument is known to be modest before its value is
    estimated. Bits add up over the whole answer: 2**2999 / 3**2000 costs as much as one power of 6,000 bits.
    """
    from sympy import (
        Add,
        Basic,
        FallingFactorial,
        MatrixBase,
        Pow,
        RisingFactorial,
        binomial,
        factorial,
        factorial2,
        gamma,
        postorder_traversal,
        subfactorial,
    )

    combinatorial = (factorial, factorial2, subfactorial, binomial, gamma, RisingFactorial, FallingFactorial)
    exact_bits = 0.0
    for item in parsed:
        roots = list(item) if isinstance(item, MatrixBase) else [item]
        for root in roots:
            if not isinstance(root, Basic):
                continue  # math-verify's string fallback: compared as text
            for node in postorder_traversal(root):
                if isinstance(node, Pow) and node.exp.is_number:
                    exponent = _magnitude(node.exp)
                    if node.base.is_number:
                        exact_bits += _log2_size(node.base) * exponent
                    elif isinstance(node.base, Add) and (
                        _expansion_terms(len(node.base.args), exponent) > _MAX_EXPANSION_TERMS
                    ):
                        return "a power of a sum too large to expand"
                elif isinstance(node, combinatorial):
                    numeric = [_magnitude(arg) for arg in node.args if arg.is_number]
                    if numeric:
                        # n! has about n*log2(n) bits; the other functions are no larger than that bound.
                        largest = max(numeric)
                        exact_bits += largest * math.log2(max(largest, 2.0))
                if exact_bits > _MAX_EXACT_BITS:
                    return "numbers too large to evaluate exactly"
    return None


def _magnitude(value: Basic) -> float:
    """|value| as a float, by floating-point evaluation; infinity when it has none (e.g. zoo, nan)."""
    try:
        magnitude = abs(complex(value.evalf(15)))
    except (TypeError, ValueError, OverflowError):
        return math.inf
    return math.inf if math.isnan(magnitude) else magnitude


def _expansion_terms(summands: int, exponent: float) -> float:
    """How many terms a sum of `summands` terms raised to `exponent` has when multiplied out."""
    if not math.isfinite(exponent):
        return math.inf
    return math.comb(round(exponent) + summands - 1, summands - 1)


def _log2_size(base: Basic) -> float:
    """Roughly how many bits each power of `base` adds to an exact result."""
    from sympy import Abs, Rational, log

    if isinstance(base, Rational):
        # Both numerator and denominator grow: (1/2)**n has an n-bit denominator.
        return max(math.log2(abs(base.p)) if base.p else 0.0, math.log2(base.q))
    # log2 taken in sympy: |base| itself may be beyond float range, e.g. the 3**600000 in 2/3**600000.
    try:
        magnitude = Abs(base.evalf(15))
        return 0.0 if magnitude == 0 else abs(float(log(magnitude, 2)))
    except (TypeError, ValueError, OverflowError):
        return math.inf
