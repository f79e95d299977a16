"""The distiller: turns one problem's whole trajectory into candidate experiences at three levels and two zones.

The model writes the lessons; the trajectory itself decides what is allowed: golden lessons only when some attempt
was verified correct, warning lessons only when some attempt failed. A case is the concrete problem instance, so
the trajectory guarantees one per zone it supports, whatever the model wrote: its text is the model's when it
gave one and a factual summary otherwise, and it carries a worked example taken from the trajectory (the verified
correct answer, or the wrong one with the critic's diagnosis). A weak model still leaves useful cases behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from flexlearn.agents.templates import build, copies_example, load, shorten
from flexlearn.experience import LEVEL_PARENT, Experience, Level, Provenance, Zone
from flexlearn.limits import DEFAULT_LIMITS, Limits
from flexlearn.models.base import ChatModel, GenerationOptions, Usage
from flexlearn.models.middleware import Meter
from flexlearn.models.structured import generate_structured
from flexlearn.trajectory import StepRecord


class CandidateReply(BaseModel):
    zone: Literal["golden", "warning"]
    level: Literal["principle", "pattern", "case"]
    title: str = Field(max_length=DEFAULT_LIMITS.distiller_reply_title_chars)
    content: str = Field(max_length=DEFAULT_LIMITS.distiller_reply_content_chars)
    quote: str = Field(default="", max_length=DEFAULT_LIMITS.distiller_reply_quote_chars)
    instead: str = Field(default="", max_length=DEFAULT_LIMITS.distiller_reply_quote_chars)
    example: str = Field(default="", max_length=DEFAULT_LIMITS.distiller_reply_quote_chars)


class DistilledReply(BaseModel):
    # Required in the schema, and first, so a model under a grammar writes it (it skips optional fields); a reply
    # without it still validates, with no category.
    category: str = Field(max_length=DEFAULT_LIMITS.distiller_reply_title_chars)
    experiences: list[CandidateReply] = Field(max_length=DEFAULT_LIMITS.distiller_max_lessons)

    @model_validator(mode="before")
    @classmethod
    def _category_may_be_missing(cls, data: Any) -> Any:
        if isinstance(data, dict) and "category" not in data:
            return {**data, "category": ""}
        return data


@dataclass
class Candidates:
    experiences: list[Experience]
    # For each candidate, the index of its parent candidate (case -> pattern -> principle) in `experiences`.
    parents: dict[int, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


def _record_text(steps: list[StepRecord], limits: Limits) -> str:
    lines = []
    for s in steps:
        verdict = "CORRECT" if s.correct else "WRONG"
        lines.append(f"[rollout {s.rollout + 1}, round {s.round + 1}] {verdict}; final answer: {s.extracted}")
        lines.append(shorten(s.attempt, limits.distiller_attempt_chars))
        if s.feedback:
            lines.append(f"Critic: {s.feedback}")
    return "\n".join(lines)


def _worked_example(question: str, steps: list[StepRecord], zone: Zone, limits: Limits) -> str:
    q = shorten(question, limits.distiller_example_question_chars)
    if zone == Zone.GOLDEN:
        win = next(s for s in steps if s.correct)
        return f"Q: {q}\nA: {shorten(win.attempt, limits.distiller_example_answer_chars)}"
    loss = next(s for s in steps if not s.correct)
    why = f" ({shorten(loss.feedback, limits.distiller_feedback_chars)})" if loss.feedback else ""
    wrong = f"Q: {q}\nWrong: {shorten(loss.extracted or loss.attempt, limits.distiller_wrong_answer_chars)}{why}"
    win = next((s for s in steps if s.correct), None)
    if win is not None:
        wrong += f"\nCorrected: {shorten(win.attempt, limits.distiller_example_answer_chars)}"
    return wrong


async def distill(
    model: ChatModel,
    *,
    question: str,
    answer: str,
    category: str,
    steps: list[StepRecord],
    provenance: Provenance,
    options: GenerationOptions | None = None,
    meter: Meter | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Candidates:
    any_right = any(s.correct for s in steps)
    any_wrong = any(not s.correct for s in steps)
    shown = "; ".join(
        f"{shorten(s.extracted or s.attempt, limits.distiller_attempt_short_chars)} "
        f"({'right' if s.correct else 'wrong'})"
        for s in steps
    )
    prompt = build(
        "distiller",
        stop=["\n\n"],
        question=shorten(question, limits.distiller_question_chars),
        answer=answer,
        category=category,
        record=_record_text(steps, limits),
        attempts_short=shown,
        example=load("distiller_example").strip(),
    )
    result = await generate_structured(model, prompt, DistilledReply, role="distiller", options=options, meter=meter)
    allowed = {Zone.GOLDEN: any_right, Zone.WARNING: any_wrong}
    written: dict[tuple[Zone, Level], list[CandidateReply]] = {}
    for c in result.value.experiences if result.value else []:
        zone, level = Zone(c.zone), Level(c.level)
        content = c.content.strip()
        kept = written.setdefault((zone, level), [])
        # A base model tends to copy the worked example in its prompt; such a lesson says nothing about this
        # problem. Two lessons per zone and level at most: a trajectory rarely supports more.
        fits = allowed[zone] and len(kept) < limits.distiller_lessons_per_level and len(content) >= 8
        if fits and not copies_example(content, "distiller") and content not in (c2.content for c2 in kept):
            kept.append(c)
    kind = _category(result.value.category if result.value else "", category)
    # Without a category, the first lesson's own title names the kind of problem better than the task does.
    kind = kind or next((_category(c.title, category) for cs in written.values() for c in cs if c.title.strip()), "")

    experiences: list[Experience] = []
    for zone in Zone:
        if not allowed[zone]:
            continue
        for level in Level:
            lessons: list[CandidateReply | None] = list(written.get((zone, level), []))
            if not lessons and level == Level.CASE:
                lessons = [None]  # the trajectory guarantees a case per zone it supports
            for c in lessons:
                experiences.append(
                    Experience(
                        zone=zone,
                        level=level,
                        title=kind or (c.title.strip() if c else "") or category,
                        content=_content(c, zone) if c else _case_summary(question, steps, zone, limits),
                        examples=_examples(c, level, question, steps, zone, limits),
                        provenance=Provenance(**vars(provenance)),
                    )
                )
    return Candidates(experiences, parents=_link(experiences), usage=result.usage, error=result.error)


def _category(written: str, task_name: str) -> str:
    """The kind of problem the distiller named, unless it is empty, just the task's name, or copied from the
    prompt's example."""
    written = written.strip().strip(".")
    if written.lower() in ("", task_name.lower(), "the kind of problem") or copies_example(written, "distiller"):
        return ""
    # A name is words: a small model's "1. 1. 2. 3. 4." or "{}" names nothing.
    visible = [c for c in written if not c.isspace()]
    if sum(c.isalpha() for c in visible) < 0.6 * len(visible) or not re.search(r"[A-Za-z]{3}", written):
        return ""
    return written


def _content(c: CandidateReply, zone: Zone) -> str:
    content = c.content.strip()
    instead = c.instead.strip()
    if zone == Zone.WARNING and instead and instead.lower() not in content.lower():
        content = f"{content.rstrip('.')}. Instead: {instead}"
    return content


def _examples(
    c: CandidateReply | None, level: Level, question: str, steps: list[StepRecord], zone: Zone, limits: Limits
) -> list[str]:
    """A lesson's evidence: the deciding step quoted, a pattern's short example, and for a case the worked
    example from the trajectory (the verified solution; for a failure the wrong answer and, when a later attempt
    got it right, the corrected solution)."""
    out: list[str] = []
    if c is not None and c.quote.strip():
        out.append(f'Deciding step: "{shorten(c.quote.strip(), limits.distiller_reply_quote_chars)}"')
    if c is not None and level == Level.PATTERN and c.example.strip():
        out.append(shorten(c.example.strip(), limits.distiller_reply_quote_chars))
    if level == Level.CASE:
        out.append(_worked_example(question, steps, zone, limits))
    return out


def _case_summary(question: str, steps: list[StepRecord], zone: Zone, limits: Limits) -> str:
    """The case in plain facts, for when the model wrote nothing usable."""
    q = shorten(question, limits.distiller_summary_question_chars)
    if zone == Zone.GOLDEN:
        win = next(s for s in steps if s.correct)
        return f"Solved: {q} Answer: {shorten(win.extracted or win.attempt, limits.distiller_summary_answer_chars)}"
    loss = next(s for s in steps if not s.correct)
    why = f" {shorten(loss.feedback, limits.distiller_feedback_chars)}" if loss.feedback else ""
    wrong = shorten(loss.extracted or loss.attempt, limits.distiller_summary_answer_chars)
    return f"Failed: {q} Wrong answer: {wrong}.{why}"


def _link(experiences: list[Experience]) -> dict[int, int]:
    """Within one zone, each case hangs under the (first) pattern and each pattern under the (first) principle."""
    where: dict[tuple[Zone, Level], int] = {}
    for i, e in enumerate(experiences):
        where.setdefault((e.zone, e.level), i)
    parents: dict[int, int] = {}
    for i, e in enumerate(experiences):
        up = LEVEL_PARENT[e.level]
        while up is not None and (e.zone, up) not in where:
            up = LEVEL_PARENT[up]
        if up is not None:
            parents[i] = where[(e.zone, up)]
    return parents
