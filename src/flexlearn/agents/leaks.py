"""Keeping the reference answer out of the critic's feedback.

The chat critic is shown the reference so that it can say *where* an attempt went wrong. Its feedback goes back to
the actor, so it must not carry the answer in any form the task's own scorer would accept: "0.5" for `\\frac{1}{2}`,
"1,200" for 1200, a reordered SMILES for the reactants. Matching the exact string misses all of these, so every
candidate span of the feedback (numbers, math, quoted text, word runs, each sentence, the whole text) is handed to
the task's scorer as if it were a reply; a span the scorer accepts is a leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flexlearn.tasks.base import Problem, Task
from flexlearn.tasks.common import numbers

MASK = "[...]"
# Word runs up to this many words: answers longer than that ("the Treaty of Westphalia") are also caught as a
# sentence or the whole text.
MAX_RUN_WORDS = 6
# Scoring is cheap for every built-in task (math-verify ~1 ms); this bounds the worst case of a long reply.
MAX_SPANS = 600

_MATH = re.compile(r"\$\$.+?\$\$|\$.+?\$|\\\(.+?\\\)|\\\[.+?\\\]|\\boxed\s*\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", re.DOTALL)
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|'([^'\n]{1,200})'|`([^`\n]{1,200})`|\u201c([^\u201d\n]{1,200})\u201d")
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;]?")
_WORD = re.compile(r"\S+")
_EDGE = ".,;:!?()[]{}\"'`*"


def spans(text: str) -> Iterator[str]:
    """Candidate answer spans of `text`, most specific first, without repeats."""
    seen: set[str] = set()

    def fresh(span: str) -> bool:
        span = span.strip()
        if not span or span in seen:
            return False
        seen.add(span)
        return True

    raw_numbers = re.findall(r"-?[\d][\d,]*(?:\.\d+)?|-?\.\d+", text)
    for span in [*raw_numbers, *numbers(text)]:
        if fresh(span):
            yield span
    for match in _MATH.finditer(text):
        if fresh(match.group()):
            yield match.group().strip()
    for match in _QUOTED.finditer(text):
        quoted = next(g for g in match.groups() if g is not None)
        if fresh(quoted):
            yield quoted.strip()
    words = [w.strip(_EDGE) for w in _WORD.findall(text)]
    words = [w for w in words if w]
    for size in range(1, MAX_RUN_WORDS + 1):
        for start in range(len(words) - size + 1):
            run = " ".join(words[start : start + size])
            if fresh(run):
                yield run
    for match in _SENTENCE.finditer(text):
        if fresh(match.group()):
            yield match.group().strip()
    if fresh(text):
        yield text.strip()


def _accepted(task: Task, problem: Problem, span: str) -> bool:
    try:
        # Bare, and behind a label: "$\\frac{2}{4}$" alone reads as its last number, 4.
        return bool(task.score(span, problem).correct or task.score(f"Final answer: {span}", problem).correct)
    except Exception:  # a scorer that chokes on a fragment has not accepted it
        return False


def _numeric(task: Task, problem: Problem) -> bool:
    """Whether the reference answer, as the task reads it, holds a digit: then only spans with a digit can be it
    (which skips most word runs, and math-verify's cost on them)."""
    try:
        reference = task.extract_answer(task.format_answer(problem)) or problem.answer
    except Exception:
        reference = problem.answer
    return any(c.isdigit() for c in reference)


def leaked_spans(task: Task, problem: Problem, text: str) -> list[str]:
    """The spans of `text` that the task's scorer accepts as the answer to `problem`."""
    digits_only = _numeric(task, problem)
    found: list[str] = []
    for i, span in enumerate(spans(text)):
        if i >= MAX_SPANS:
            break
        if digits_only and not any(c.isdigit() for c in span):
            continue
        if _accepted(task, problem, span):
            found.append(span)
    return found


def _mask(text: str, span: str) -> str:
    if re.fullmatch(r"[\w.,-]+", span):
        # Whole tokens only, so masking "2" does not eat "12".
        return re.sub(rf"(?<![\w.]){re.escape(span)}(?![\w]|\.\d)", MASK, text)
    return text.replace(span, MASK)


def redact(task: Task, problem: Problem, text: str, *, passes: int = 3) -> str | None:
    """`text` with every span the scorer would accept masked, or None when masking cannot make it safe (the
    caller then uses generic feedback). Masking is repeated until no span leaks, since removing one span can
    change what the rest reads as."""
    for _ in range(passes):
        leaks = leaked_spans(task, problem, text)
        if not leaks:
            return text
        # Short spans first: masking "1,200" also clears every sentence that held it.
        for span in sorted(leaks, key=len):
            if span == text.strip():
                continue
            text = _mask(text, span)
    return None if leaked_spans(task, problem, text) else text
