"""The distiller: turns one problem's whole trajectory into candidate experiences at three levels and two zones.

The model writes the lessons; the trajectory itself decides what is allowed: golden lessons only when some attempt
was verified correct, warning lessons only when some attempt failed. Each concrete case also carries a grounded
worked example taken from the trajectory (a verified correct answer, or a wrong one with the critic's diagnosis),
so a case stays useful even when the model's prose is weak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from flexlearn.agents.templates import build, shorten
from flexlearn.experience import LEVEL_PARENT, Experience, Level, Provenance, Zone
from flexlearn.models.base import ChatModel, GenerationOptions, Usage
from flexlearn.models.middleware import Meter
from flexlearn.models.structured import generate_structured


class CandidateReply(BaseModel):
    zone: Literal["golden", "warning"]
    level: Literal["principle", "pattern", "case"]
    title: str = Field(max_length=80)
    content: str = Field(max_length=500)


class DistilledReply(BaseModel):
    experiences: list[CandidateReply] = Field(max_length=6)


@dataclass
class StepRecord:
    """One actor attempt as the distiller sees it."""

    rollout: int
    round: int
    attempt: str
    extracted: str | None
    correct: bool
    feedback: str = ""


@dataclass
class Candidates:
    experiences: list[Experience]
    # For each candidate, the index of its parent candidate (case -> pattern -> principle) in `experiences`.
    parents: dict[int, int] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    error: str | None = None


def _record_text(steps: list[StepRecord]) -> str:
    lines = []
    for s in steps:
        verdict = "CORRECT" if s.correct else "WRONG"
        lines.append(f"[rollout {s.rollout + 1}, round {s.round + 1}] {verdict}; final answer: {s.extracted}")
        lines.append(shorten(s.attempt, 1200))
        if s.feedback:
            lines.append(f"Critic: {s.feedback}")
    return "\n".join(lines)


def _worked_example(question: str, steps: list[StepRecord], zone: Zone) -> str:
    if zone == Zone.GOLDEN:
        win = next(s for s in steps if s.correct)
        return f"Q: {shorten(question, 400)}\nA: {shorten(win.attempt, 600)}"
    loss = next(s for s in steps if not s.correct)
    why = f" ({shorten(loss.feedback, 200)})" if loss.feedback else ""
    return f"Q: {shorten(question, 400)}\nWrong: {shorten(loss.extracted or loss.attempt, 200)}{why}"


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
) -> Candidates:
    any_right = any(s.correct for s in steps)
    any_wrong = any(not s.correct for s in steps)
    shown = "; ".join(f"{shorten(s.extracted or s.attempt, 40)} ({'right' if s.correct else 'wrong'})" for s in steps)
    prompt = build(
        "distiller",
        stop=["\n\n"],
        question=shorten(question, 3000),
        answer=answer,
        category=category,
        record=_record_text(steps),
        attempts_short=shown,
    )
    result = await generate_structured(model, prompt, DistilledReply, role="distiller", options=options, meter=meter)
    if result.value is None:
        return Candidates([], usage=result.usage, error=result.error)

    allowed = {Zone.GOLDEN: any_right, Zone.WARNING: any_wrong}
    seen: set[tuple[Zone, Level]] = set()
    experiences: list[Experience] = []
    for c in result.value.experiences:
        zone, level = Zone(c.zone), Level(c.level)
        content = c.content.strip()
        if not allowed[zone] or (zone, level) in seen or len(content) < 8:
            continue
        seen.add((zone, level))
        examples = [_worked_example(question, steps, zone)] if level == Level.CASE else []
        experiences.append(
            Experience(
                zone=zone,
                level=level,
                title=c.title.strip() or category,
                content=content,
                examples=examples,
                provenance=Provenance(**vars(provenance)),
            )
        )
    return Candidates(experiences, parents=_link(experiences), usage=result.usage)


def _link(experiences: list[Experience]) -> dict[int, int]:
    """Within one zone, each case hangs under the pattern and each pattern under the principle."""
    where = {(e.zone, e.level): i for i, e in enumerate(experiences)}
    parents: dict[int, int] = {}
    for i, e in enumerate(experiences):
        up = LEVEL_PARENT[e.level]
        while up is not None and (e.zone, up) not in where:
            up = LEVEL_PARENT[up]
        if up is not None:
            parents[i] = where[(e.zone, up)]
    return parents
