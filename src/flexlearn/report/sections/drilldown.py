"""The per-item drill-down: one collapsible row per problem, marks per mode, and each mode's attempt inside."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from flexlearn.records import ItemRecord
from flexlearn.report.format import Clipped, anchor, clip, clipped
from flexlearn.report.sections.library import Experiences

# Caps that keep a large run's page light enough for a browser; the full text stays in items.jsonl.
MAX_PROBLEMS = 500
QUESTION_CHARS = 2000
PROMPT_CHARS = 2000
REPLY_CHARS = 3000
STEP_CHARS = 1500


@dataclass
class Problem:
    """One problem's attempts, by mode, in repeat order."""

    problem_id: str
    question: str
    reference: str
    by_mode: dict[str, list[ItemRecord]] = field(default_factory=dict)

    def disagree(self) -> bool:
        """Whether the modes scored this problem differently (with repeats: a different share of correct
        attempts; a mode that is wrong on one repeat and right on another does not disagree with itself)."""
        return len({sum(a.correct for a in atts) / len(atts) for atts in self.by_mode.values() if atts}) > 1


def group(items: Sequence[ItemRecord]) -> list[Problem]:
    """The items by problem, in the order problems first appear."""
    problems: dict[str, Problem] = {}
    for item in items:
        p = problems.get(item.problem_id)
        if p is None:
            p = problems[item.problem_id] = Problem(item.problem_id, item.question, item.reference)
        p.by_mode.setdefault(item.mode, []).append(item)
    for p in problems.values():
        for attempts in p.by_mode.values():
            attempts.sort(key=lambda i: i.repeat)
    return list(problems.values())


@dataclass(frozen=True)
class Step:
    """One tool run of a tool-using actor: what it was, the code it wrote and the output it saw next."""

    label: str
    input: Clipped
    observation: Clipped


@dataclass(frozen=True)
class Attempt:
    """One mode's attempt at a problem (one repeat), with its texts clipped for the page."""

    label: str
    item: ItemRecord
    extracted: str | None
    reply: Clipped
    prompt: Clipped
    score_data: str
    steps: list[Step]


@dataclass(frozen=True)
class ProblemRow:
    """One problem: its row (a mark per mode) and, inside it, the question and every attempt."""

    problem: Problem
    anchor: str
    differ: bool
    question: Clipped
    reference: str
    marks: list[list[ItemRecord]]
    attempts: list[Attempt]


@dataclass(frozen=True)
class Drilldown:
    """What `items.html.j2` shows: at most `max_problems` of `total` problems."""

    modes: list[str]
    total: int
    differ: int
    problems: list[ProblemRow]
    shown: Experiences


def drilldown(
    items: Sequence[ItemRecord], modes: Sequence[str], shown: Experiences, max_problems: int
) -> Drilldown | None:
    """The section, listing at most `max_problems` problems; None when there are no items."""
    problems = group(items)
    if not problems:
        return None
    return Drilldown(
        modes=list(modes),
        total=len(problems),
        differ=sum(p.disagree() for p in problems),
        problems=[_problem_row(p, modes) for p in problems[:max_problems]],
        shown=shown,
    )


def _problem_row(p: Problem, modes: Sequence[str]) -> ProblemRow:
    attempts = []
    for mode in [*modes, *(m for m in p.by_mode if m not in modes)]:
        tries = p.by_mode.get(mode, [])
        for a in tries:
            # Repeats are numbered from 0 in items.jsonl; people count from 1.
            attempts.append(_attempt(a, f"{mode} (repeat {a.repeat + 1})" if len(tries) > 1 else mode))
    return ProblemRow(
        problem=p,
        anchor=anchor("p", p.problem_id),
        differ=p.disagree(),
        question=clipped(p.question, QUESTION_CHARS),
        reference=clip(p.reference, 2000)[0],
        marks=[p.by_mode.get(m, []) for m in modes],
        attempts=attempts,
    )


def _attempt(a: ItemRecord, label: str) -> Attempt:
    return Attempt(
        label=label,
        item=a,
        extracted=None if a.extracted is None else clip(a.extracted, 300)[0],
        reply=clipped(a.reply, REPLY_CHARS),
        prompt=clipped(a.prompt, PROMPT_CHARS),
        score_data=json.dumps(a.score_data, indent=2, ensure_ascii=False) if a.score_data else "",
        steps=_tool_steps(a),
    )


def _tool_steps(a: ItemRecord) -> list[Step]:
    """Each tool run of a tool-using actor, in order: the code it wrote and the output it saw next."""
    rounds = len({s.round for s in a.steps}) > 1
    return [
        Step(
            f"Step {i}: {step.kind}{f', round {step.round + 1}' if rounds else ''} ({step.seconds:.1f} s)",
            clipped(step.input, STEP_CHARS),
            clipped(step.observation, STEP_CHARS),
        )
        for i, step in enumerate(a.steps, 1)
    ]
