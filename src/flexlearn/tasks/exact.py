"""Any question/answer JSONL, scored by normalized string match."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.common import final_answer_line, strip_markup
from flexlearn.tasks.loader import load_problems

_LABELS = ("final answer", "answer")
# Straight and typographic quotes, and backticks, as left after NFKC.
_QUOTES = "\"'`\u2018\u2019\u201c\u201d\u00ab\u00bb"
_TRAILING_PUNCTUATION = ".,;:!?\u3002"
_ARTICLE = re.compile(r"^(?:the|a|an)\s+(?=\S)")
_WHITESPACE = re.compile(r"\s+")


class ExactTask:
    """Problems with a short exact answer: JSONL with "question" and "answer".

    The answer may be a JSON list of accepted answers; any of them counts (`Problem.answer` is the first, and
    `meta["accepted"]` holds all). Comparison is after `normalize`: case, spacing, quotes, trailing punctuation and
    a leading article do not matter.
    """

    name = "exact"
    answer_format = "End your reply with a last line of the form: Final answer: ANSWER"

    def load(self, path: str | Path) -> list[Problem]:
        """Read a JSONL file. Raises InputError naming the file and line on bad input."""
        return load_problems(path, accept_lists=True)

    def render(self, problem: Problem) -> str:
        """The question text as is."""
        return problem.question

    def extract_answer(self, reply: str) -> str | None:
        """What follows the last "Final answer:" (or "Answer:"), else the last non-empty line; or None."""
        labelled = final_answer_line(reply, _LABELS)
        if labelled is not None:
            return labelled
        lines = [strip_markup(line) for line in reply.splitlines()]
        return next((line for line in reversed(lines) if line), None)

    def score(self, reply: str, problem: Problem) -> Score:
        """1.0 when the reply's answer matches the reference (or any accepted answer) after `normalize`."""
        extracted = self.extract_answer(reply)
        if extracted is None:
            return Score(correct=False, value=0.0, extracted=None, detail="no answer found in the reply")
        accepted = problem.meta.get("accepted") or [problem.answer]
        given = normalize(extracted)
        if any(given == normalize(str(answer)) for answer in accepted):
            return Score(correct=True, value=1.0, extracted=extracted, detail="matches the reference")
        return Score(correct=False, value=0.0, extracted=extracted, detail="does not match the reference")

    def format_answer(self, problem: Problem) -> str:
        """`Final answer: <reference>`, the way a correct reply ends."""
        return f"Final answer: {problem.answer}"


def normalize(text: str) -> str:
    """The form answers are compared in: NFKC, casefolded, inner whitespace collapsed, surrounding whitespace,
    quotes and trailing punctuation stripped, and a leading "the", "a" or "an" dropped ("The Eiffel Tower." ->
    "eiffel tower"). A lone "a" stays, as it may be a choice label."""
    text = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    text = _strip_edges(text)
    return _strip_edges(_ARTICLE.sub("", text))


def _strip_edges(text: str) -> str:
    """Strip whitespace, quotes and trailing punctuation until none is left at the edges ('"Paris".' -> Paris)."""
    previous = None
    while text != previous:
        previous = text
        text = text.strip().strip(_QUOTES).rstrip(_TRAILING_PUNCTUATION)
    return text
