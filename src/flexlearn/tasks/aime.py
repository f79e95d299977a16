"""AIME: competition problems whose answer is an integer from 0 to 999, compared as integers ("070" == "70").

Files. JSON Lines with "problem" or "question" and "answer" (an int, or a string of digits), as in AIME25
(`aime25/test.jsonl`: "problem", int "answer", "id") and FLEX's `data/AIME/*.jsonl` ("question", string "answer").
Also a JSON array of such objects, as in the rllm/DeepScaleR `aime.json` files (AIME 1983-2024: "problem", "answer"
as a possibly zero-padded string, "solution", "year", "aime_number", "problem_number", "difficulty"). A file is
read as an array when its first non-blank character is '['. Array elements get the id "<year>-<I|II>-<number>"
when they carry "year", "aime_number" and "problem_number" (a problem number 0, which those files give problem 15
of 2023 and 2024, reads as 15), else "<file name>:<position>" (1-based).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flexlearn.errors import InputError
from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.common import (
    extract_final,
    strip_markup,
    strip_math_delimiters,
)
from flexlearn.tasks.loader import load_problems

LOWEST, HIGHEST = 0, 999

# An integer, maybe zero-padded or signed, maybe written as a decimal with only zeros after the point ("70.0").
_INTEGER = re.compile(r"^(?P<sign>[+\-\u2212]?)(?P<digits>\d+)(?:\.0*)?$")
# Python refuses to read integers of more than 4,300 digits; anything that long is no answer anyway.
_MAX_DIGITS = 4000
# Stripped from the end of an answer: "Final answer: 70." ends a sentence.
_SENTENCE_END = ".,;: \t"
# `\textbf{70}`, `\mathrm{70}`: formatting around the number.
_FONT = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LATEX_SPACES = re.compile(r"\\[,;:! ]|~")
# `n = 70`, `\text{answer} = 070`: the value is what follows the last '='.
_ASSIGNMENT = re.compile(r"^[^=]*=\s*")

_QUESTION_KEYS = ("question", "problem")
_ROMAN = {1: "I", 2: "II"}


class AimeTask:
    """AIME problems: an integer answer from 0 to 999, compared as an integer. Loads JSONL or a JSON array (see the
    module docstring); the reference must be such an integer, or loading fails naming the line."""

    name = "aime"
    answer_format = (
        "The answer is an integer from 0 to 999. Put it in \\boxed{}, on the last line: Final answer: \\boxed{ANSWER}"
    )

    def load(self, path: str | Path) -> list[Problem]:
        """Read a JSONL file or a JSON array of problems. Raises InputError naming the file (and the line, or the
        array element) on bad input."""
        if _starts_with_bracket(path):
            return _load_array(path)
        return load_problems(path, question_key=_QUESTION_KEYS, check=_check_reference)

    def render(self, problem: Problem) -> str:
        """The question text as is."""
        return problem.question

    def extract_answer(self, reply: str) -> str | None:
        """The last `\\boxed{}` content, else what follows "Final answer:" (without math delimiters or a sentence
        end), else the last number; or None. The text is not yet read as an integer: `score` does that."""
        return extract_final(reply, trailing=_SENTENCE_END)

    def score(self, reply: str, problem: Problem) -> Score:
        """1.0 when the reply's final answer is the reference integer. An answer that is not an integer, or not in
        0-999, scores 0 with the reason in `detail`. Never raises."""
        extracted = self.extract_answer(reply)
        if extracted is None:
            return Score(correct=False, value=0.0, extracted=None, detail="no final answer found in the reply")
        reference = parse_integer(problem.answer)
        if reference is None:
            return Score(correct=False, value=0.0, extracted=extracted, detail="the reference is not an integer")
        value = parse_integer(extracted)
        if value is None:
            return Score(correct=False, value=0.0, extracted=extracted, detail="the answer is not an integer")
        if not LOWEST <= value <= HIGHEST:
            return Score(
                correct=False,
                value=0.0,
                extracted=extracted,
                detail=f"the answer {value} is outside the AIME range {LOWEST}-{HIGHEST}",
            )
        if value == reference:
            return Score(correct=True, value=1.0, extracted=extracted, detail="equal to the reference")
        return Score(correct=False, value=0.0, extracted=extracted, detail=f"differs from the reference {reference}")

    def format_answer(self, problem: Problem) -> str:
        """`Final answer: \\boxed{<reference>}`, the reference without zero padding."""
        reference = parse_integer(problem.answer)
        return f"Final answer: \\boxed{{{reference if reference is not None else problem.answer.strip()}}}"


def parse_integer(text: str) -> int | None:
    """The integer an answer states, or None: "070" -> 70, "$70$." -> 70, "n = 70" -> 70, "70.0" -> 70;
    "70.5", "7e1" and "seventy" -> None. Any sign and size up to 4,000 digits is read; the caller checks the range."""
    text = strip_markup(text).rstrip(_SENTENCE_END)
    text = strip_markup(strip_math_delimiters(text))
    text = _LATEX_SPACES.sub("", _ASSIGNMENT.sub("", _FONT.sub(r"\1", text)))
    # A bare `{70}` (left by `\boxed{{70}}`) or a sentence end around the number.
    text = text.strip("{} ").rstrip(_SENTENCE_END).strip()
    match = _INTEGER.match(text)
    if match is None:
        return None
    digits = match["digits"].lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        return None
    return -int(digits) if match["sign"] in ("-", "\u2212") else int(digits)


def _check_reference(problem: Problem) -> str | None:
    """The loader's per-problem check: the reference must be an integer in the AIME range."""
    value = parse_integer(problem.answer)
    if value is None or not LOWEST <= value <= HIGHEST:
        return f"answer {problem.answer[:60]!r} is not an integer from {LOWEST} to {HIGHEST}"
    return None


def _starts_with_bracket(path: str | Path) -> bool:
    """Whether a file's first non-blank character is '[' (a JSON array). Unreadable files say False, so that the
    JSONL loader reports the problem."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"[")


def _load_array(path: str | Path) -> list[Problem]:
    """The problems in a JSON array file (see the module docstring)."""
    where = str(path)
    try:
        elements = json.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (byte {exc.start + 1})", path=where) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=where, line=exc.lineno) from None
    if not isinstance(elements, list) or not elements:
        raise InputError("expected a non-empty JSON array of problems", path=where)
    problems: list[Problem] = []
    seen: set[str] = set()
    for position, element in enumerate(elements, start=1):
        problem = _array_problem(element, position, path)
        if problem.id in seen:
            raise InputError(f"element {position}: duplicate id {problem.id!r}", path=where)
        seen.add(problem.id)
        problems.append(problem)
    return problems


def _array_problem(element: Any, position: int, path: str | Path) -> Problem:
    """One array element as a Problem; raises InputError naming the element."""
    where = str(path)
    if not isinstance(element, dict):
        raise InputError(f"element {position}: expected a JSON object", path=where)
    key = next((key for key in _QUESTION_KEYS if key in element), None)
    question = element.get(key) if key is not None else None
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"element {position}: missing or empty 'problem' (or 'question')", path=where)
    answer = element.get("answer")
    # bool is an int, and `true` is no AIME answer.
    if isinstance(answer, bool) or not isinstance(answer, int | str):
        raise InputError(f"element {position}: 'answer' must be an integer or a string", path=where)
    problem = Problem(
        id=_array_id(element, position, path),
        question=question,
        answer=str(answer),
        meta={name: value for name, value in element.items() if name not in (key, "answer", "id")},
    )
    complaint = _check_reference(problem)
    if complaint is not None:
        raise InputError(f"element {position}: {complaint}", path=where)
    return problem


def _array_id(element: dict[str, Any], position: int, path: str | Path) -> str:
    """An array element's id: its "id", else year-contest-number, else file name and position."""
    if isinstance(element.get("id"), str | int) and not isinstance(element.get("id"), bool):
        return str(element["id"])
    year, contest, number = (element.get(name) for name in ("year", "aime_number", "problem_number"))
    if all(isinstance(value, int) for value in (year, contest, number)):
        # The rllm files number the last problem of the 2023 and 2024 contests 0 instead of 15 (in the file order
        # it follows problem 14); the id says 15, the record's own field is left as it is.
        return f"{year}-{_ROMAN.get(contest, contest)}-{number or 15}"
    return f"{Path(path).name}:{position}"
