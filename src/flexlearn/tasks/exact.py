"""Any question/answer JSONL, scored by normalized string match."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.common import answer_is, final_answer_line, last_boxed, strip_markup
from flexlearn.tasks.loader import load_problems

_LABELS = ("final answer", "answer")
# Straight and typographic quotes, and backticks, as left after NFKC.
_QUOTES = "\"'`\u2018\u2019\u201c\u201d\u00ab\u00bb"
_TRAILING_PUNCTUATION = ".,;:!?\u3002"
_ARTICLE = re.compile(r"^(?:the|a|an)\s+(?=\S)")
_WHITESPACE = re.compile(r"\s+")
# The complement of a one-sentence statement: "... is Paris." -> "Paris". Only a line that reads as one sentence
# (ends in a full stop or exclamation mark, or has no other punctuation) with few words after the verb.
_COPULA = re.compile(r"^[^.?!\n]*\s(?:is|are|was|were)\s+(?P<answer>(?:\S+\s*){1,6}?)[.!]?$", re.IGNORECASE)


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
        """A chat model's final answer, most explicit first: what follows the last "Final answer:" (or "Answer:"),
        else the last "the answer is X", else the last `\\boxed{}`, else the last non-empty line, where a sentence
        stating a fact ("The capital of France is Paris.") gives what follows its last "is"/"are"/"was"/"were".
        None for an empty reply."""
        labelled = final_answer_line(reply, _LABELS)
        if labelled is not None:
            return labelled
        for found in (answer_is(reply), last_boxed(reply)):
            if found:
                return found
        lines = [strip_markup(line) for line in reply.splitlines()]
        last = next((line for line in reversed(lines) if line), None)
        if last is None:
            return None
        stated = _COPULA.search(last)
        return strip_markup(stated.group("answer").rstrip(".!")) if stated else last

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
