"""Formula questions with one numeric answer, scored by the ACE paper's rule: equal as floats, exactly.

The data is ACE's XBRL Formula benchmark (arXiv 2510.04618, shipped in `benchmarks/data/finance_formula/`), but
nothing here depends on its subject: any JSONL of "question"/"answer" with a numeric answer works.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.common import final_answer_line, last_boxed, strip_math_delimiters
from flexlearn.tasks.loader import load_problems

# A reply that is nothing but a number: what a model asked for the bare number (as ACE's prompts do) writes.
_BARE_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# A `\boxed{...}` (or `\fbox{...}`) that wraps the whole answer.
_BOXED_WHOLE = re.compile(r"\\(?:boxed|fbox)\s*\{(?P<inner>.*)\}", re.DOTALL)
# Markdown emphasis and code marks around an answer ("**0.20**", "`0.20`").
_EDGES = string.whitespace + "*_`"


class FormulaTask:
    """Problems whose answer is one number: JSONL with "question" and "answer" (and optionally "category", the
    kind of problem, which `flex learn` uses as the title of the lessons it distils).

    A reply is right when its final answer (see `extract_answer`), commas removed, equals the reference as a
    float, exactly: "0.20" matches "0.2" and "1,000.00" matches "1000.0", while "15%" or "$1,200" do not parse
    and are wrong. Which figure to report, in what unit and how rounded is left for the model to learn from the
    data.
    """

    name = "formula"
    answer_format = (
        "End your reply with a last line of the form: Final answer: NUMBER "
        "(a plain number with two decimal places: no units, no % sign, no thousands separators)"
    )

    def load(self, path: str | Path) -> list[Problem]:
        """Read a JSONL file. Raises InputError naming the file and line on bad input, including a reference
        answer that is not a number."""
        return load_problems(path, check=_check_reference)

    def render(self, problem: Problem) -> str:
        """The question text as is."""
        return problem.question

    def extract_answer(self, reply: str) -> str | None:
        """The final answer as written, cleaned of surrounding whitespace, Markdown emphasis or backticks, a
        trailing full stop and a `\\boxed{}` wrapper: what follows the last "Final answer:" (on its line, or on the
        next non-empty one), else the content of the last `\\boxed{}`, else the whole reply when it is a single
        number. None otherwise. The text is not read for a number: "15%" stays "15%" (and scores wrong)."""
        labelled = final_answer_line(reply)
        if labelled is not None:
            return _clean(labelled) or None
        boxed = last_boxed(reply)
        if boxed is not None:
            return _clean(boxed) or None
        whole = _clean(reply)
        return whole if _BARE_NUMBER.fullmatch(whole) else None

    def score(self, reply: str, problem: Problem) -> Score:
        """1.0 when `float(final answer)` equals `float(reference)`, commas removed from both. Never raises."""
        extracted = self.extract_answer(reply)
        if extracted is None:
            return Score(correct=False, value=0.0, extracted=None, detail="no final answer found in the reply")
        given, reference = to_float(extracted), to_float(problem.answer)
        if given is None:
            return Score(correct=False, value=0.0, extracted=extracted, detail="the final answer is not a number")
        if reference is None:
            return Score(correct=False, value=0.0, extracted=extracted, detail="the reference is not a number")
        if given == reference:
            return Score(correct=True, value=1.0, extracted=extracted, detail="equal to the reference")
        return Score(
            correct=False, value=0.0, extracted=extracted, detail=f"differs from the reference {problem.answer}"
        )

    def format_answer(self, problem: Problem) -> str:
        """`Final answer: <reference>`, the way a correct reply ends."""
        return f"Final answer: {problem.answer}"


def to_float(text: str) -> float | None:
    """ACE's reading of an answer: `float()` of the text with commas removed; None when it does not parse."""
    try:
        return float(text.replace(",", ""))
    except (ValueError, OverflowError):
        return None


def _clean(text: str) -> str:
    """`text` without surrounding whitespace, emphasis or code marks, a trailing full stop, math delimiters or a
    `\\boxed{}` around it, repeated until nothing changes ("**\\boxed{0.20}**." -> "0.20", "\\[ \\boxed{5.00} \\]" ->
    "5.00")."""
    previous = None
    while text != previous:
        previous = text
        text = text.strip(_EDGES)
        text = strip_math_delimiters(text.removesuffix("."))
        boxed = _BOXED_WHOLE.fullmatch(text)
        if boxed is not None:
            text = boxed.group("inner")
    return text


def _check_reference(problem: Problem) -> str | None:
    """The loader's per-problem check: the reference must read as a number."""
    if to_float(problem.answer) is None:
        return f"answer {problem.answer[:60]!r} is not a number"
    return None
