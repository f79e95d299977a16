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

from flexlearn.agents.critic import is_generic
from flexlearn.agents.templates import build, copies_example, load, shorten, squash
from flexlearn.experience import LEVEL_PARENT, Experience, Level, Provenance, Zone
from flexlearn.limits import DEFAULT_LIMITS, Limits
from flexlearn.models.base import ChatModel, GenerationOptions, PromptKind, Usage
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
    # Lessons the model wrote that were not kept, each with its zone, level, content and why.
    dropped: list[dict[str, str]] = field(default_factory=list)
    # The kind of problem the data named (its category), which titles every candidate; "" when the data named none.
    kind: str = ""


# The lessons a chat model is asked for, in order, for each zone the trajectory supports: one general principle and
# one pattern. Left free, a small chat model under a JSON grammar writes one or two lessons, almost never a
# principle or a warning pattern (measured with Qwen2.5-Coder 1.5B: 2 golden principles, 0 warning principles in
# 30 problems); fixed slots make it write each, and the updater discards those that add nothing. Cases come from the
# trajectory itself. Opt-in (`distill(slots=True)`, `LearnConfig.distiller_slots`): the lessons the 1.5B wrote into
# the slots were mostly vague or wrong, and the library learned that way made flex worse (README).
SLOTS = (Level.PRINCIPLE, Level.PATTERN)


def slot_schema(zones: list[Zone]) -> dict[str, Any]:
    """The reply shape a chat model is held to: "category", then exactly one principle and one pattern per zone in
    `zones`, a warning with what to do "instead", a pattern with an "example", a quote of the deciding step where
    the model has one. Strings are bounded tighter than `DistilledReply`'s (a small model under a grammar runs a
    quote on for as long as it may), so every reply of this shape validates as a `DistilledReply`."""
    slots = []
    for zone in zones:
        for level in SLOTS:
            properties: dict[str, Any] = {
                "zone": {"const": str(zone)},
                "level": {"const": str(level)},
                "title": {"type": "string", "maxLength": 60},
                "content": {"type": "string", "maxLength": 300},
                "quote": {"type": "string", "maxLength": 120},
            }
            required = ["zone", "level", "title", "content"]
            if zone == Zone.WARNING:
                properties["instead"] = {"type": "string", "maxLength": 200}
                required.append("instead")
            if level == Level.PATTERN:
                properties["example"] = {"type": "string", "maxLength": 200}
                required.append("example")
            slots.append({"type": "object", "properties": properties, "required": required})
    return {
        "type": "object",
        "properties": {
            "category": {"type": "string", "maxLength": DEFAULT_LIMITS.distiller_reply_title_chars},
            "experiences": {"type": "array", "prefixItems": slots, "minItems": len(slots), "maxItems": len(slots)},
        },
        "required": ["category", "experiences"],
    }


def _slots_text(zones: list[Zone]) -> str:
    return ", then ".join(f"a {zone} {level}" for zone in zones for level in SLOTS)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# Capitalised words that open sentences of word problems without naming anything in them.
# fmt: off
_OPENERS = frozenset({
    "the", "how", "what", "if", "when", "then", "there", "this", "that", "these", "those", "each", "every", "after",
    "before", "she", "his", "her", "him", "they", "their", "its", "for", "and", "but", "some", "all", "one", "two",
    "three", "four", "five", "six", "seven", "eight", "nine", "ten", "in", "on", "at", "during", "while", "with",
    "from", "over", "under", "find", "calculate", "given", "suppose", "assume", "let", "who", "which", "where",
    "why", "also", "today", "yesterday", "tomorrow", "now", "how's", "what's", "you", "your", "we", "our", "it",
    "is", "are", "was", "were", "a", "an", "as", "by", "of", "to", "so",
})
# fmt: on


def _names(text: str) -> set[str]:
    """Capitalised words of three letters or more that are not a sentence's usual opening words: the names of
    the problem's people, places and things."""
    return {w for w in re.findall(r"\b[A-Z][a-z]{2,}\b", text) if w.lower() not in _OPENERS}


def specific_to(text: str, question: str) -> bool:
    """Whether a lesson names this problem's particulars: a number of two digits or more, or a name (a capitalised
    word inside a sentence), that the problem states. A principle or pattern that does is about this problem, not
    its kind, and reads as noise (or a wrong hint) beside any other problem."""
    numbers = {n for n in _NUMBER.findall(question) if len(n.replace(",", "").replace(".", "")) >= 2}
    names = _names(question)
    return any(n in numbers for n in _NUMBER.findall(text)) or any(w in names for w in re.findall(r"[A-Za-z]+", text))


def _record_text(steps: list[StepRecord], limits: Limits) -> str:
    lines = []
    for s in steps:
        verdict = "CORRECT" if s.correct else "WRONG"
        lines.append(f"[rollout {s.rollout + 1}, round {s.round + 1}] {verdict}; final answer: {s.extracted}")
        lines.append(shorten(s.attempt, limits.distiller_attempt_chars))
        if s.feedback:
            lines.append(f"Critic: {s.feedback}")
    return "\n".join(lines)


def _why(step: StepRecord, trust_feedback: bool) -> str:
    """The critic's feedback on a wrong attempt, as a case may quote it: only a critic worth quoting (a chat
    model; a base model's "75 is a long vowel" would read as a lesson), and never the generic stand-in."""
    return step.feedback if trust_feedback and step.feedback and not is_generic(step.feedback) else ""


def _worked_example(
    question: str, answer: str, steps: list[StepRecord], zone: Zone, limits: Limits, trust_feedback: bool
) -> str:
    q = shorten(question, limits.distiller_example_question_chars)
    if zone == Zone.GOLDEN:
        win = next(s for s in steps if s.correct)
        return f"Q: {q}\nA: {shorten(win.attempt, limits.distiller_example_answer_chars)}"
    loss = next(s for s in steps if not s.correct)
    why = _why(loss, trust_feedback)
    why = f" ({shorten(why, limits.distiller_feedback_chars)})" if why else ""
    wrong = f"Q: {q}\nWrong: {shorten(loss.extracted or loss.attempt, limits.distiller_wrong_answer_chars)}{why}"
    win = next((s for s in steps if s.correct), None)
    if win is not None:
        return wrong + f"\nCorrected: {shorten(win.attempt, limits.distiller_example_answer_chars)}"
    # No attempt got it right: the case still says what the answer was, which is what a reader needs.
    return wrong + (f"\nRight answer: {shorten(answer, limits.distiller_example_answer_chars)}" if answer else "")


async def distill(
    model: ChatModel,
    *,
    question: str,
    answer: str,
    category: str,
    steps: list[StepRecord],
    known_category: str = "",
    slots: bool = False,
    trust_feedback: bool = True,
    provenance: Provenance,
    options: GenerationOptions | None = None,
    meter: Meter | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Candidates:
    any_right = any(s.correct for s in steps)
    any_wrong = any(not s.correct for s in steps)
    zones = [z for z, ok in ((Zone.GOLDEN, any_right), (Zone.WARNING, any_wrong)) if ok]
    # With `slots`, a chat model is held to fixed slots (see SLOTS); a base model, which copies worked examples
    # rather than following a shape, always keeps the free list its completion prompt shows.
    slotted = slots and model.prompt_kind == PromptKind.CHAT and bool(zones)
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
        slots=(
            f"Write these lessons, in this order: {_slots_text(zones)}."
            if slotted
            else "Write every lesson the record supports, at most two per zone and level."
        ),
    )
    result = await generate_structured(
        model,
        prompt,
        DistilledReply,
        role="distiller",
        options=options,
        meter=meter,
        json_schema=slot_schema(zones) if slotted else None,
    )
    allowed = {Zone.GOLDEN: any_right, Zone.WARNING: any_wrong}
    written: dict[tuple[Zone, Level], list[CandidateReply]] = {}
    dropped: list[dict[str, str]] = []
    for c in result.value.experiences if result.value else []:
        zone, level = Zone(c.zone), Level(c.level)
        content = c.content.strip()
        kept = written.setdefault((zone, level), [])
        said = {squash(c2.content) for (z, _), cs in written.items() if z == zone for c2 in cs}
        why = _rejected(content, zone, level, kept, said, allowed, question, limits)
        if why:
            dropped.append({"zone": str(zone), "level": str(level), "content": content, "why": why})
        else:
            kept.append(c)
    # A category the data gives (the problem's own "category" field) is a person's label: it wins over the model's.
    kind = _category(known_category, category) or _category(result.value.category if result.value else "", category)
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
                        content=(
                            _content(c, zone)
                            if c
                            else _case_summary(question, answer, steps, zone, limits, trust_feedback)
                        ),
                        examples=_examples(c, level, question, answer, steps, zone, limits, trust_feedback),
                        provenance=Provenance(**vars(provenance)),
                    )
                )
    return Candidates(
        experiences,
        parents=_link(experiences),
        usage=result.usage,
        error=result.error,
        dropped=dropped,
        kind=_category(known_category, category),
    )


def _rejected(
    content: str,
    zone: Zone,
    level: Level,
    kept: list[CandidateReply],
    said: set[str],
    allowed: dict[Zone, bool],
    question: str,
    limits: Limits,
) -> str:
    """Why a lesson the model wrote is not kept, or "" when it is."""
    if not allowed[zone]:
        return f"no attempt supports a {zone} lesson"
    if len(content) < 8:
        return "too short to say anything"
    if len(kept) >= limits.distiller_lessons_per_level:
        # Two lessons per zone and level at most: a trajectory rarely supports more.
        return f"already {len(kept)} {zone} {level} lessons from this problem"
    if level != Level.CASE and specific_to(content, question):
        # A principle or pattern must hold for the kind of problem, not name this one's numbers or people.
        return "names this problem's numbers or names"
    if copies_example(content, "distiller"):
        # A base model tends to copy the worked example in its prompt; such a lesson says nothing about this one.
        return "copies the prompt's worked example"
    if squash(content) in said:
        # A small model held to slots often writes its principle again as the pattern.
        return "repeats a lesson already kept"
    return ""


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
    c: CandidateReply | None,
    level: Level,
    question: str,
    answer: str,
    steps: list[StepRecord],
    zone: Zone,
    limits: Limits,
    trust_feedback: bool,
) -> list[str]:
    """A lesson's evidence: the deciding step quoted, a pattern's short example, and for a case the worked
    example from the trajectory (the verified solution; for a failure the wrong answer and, when a later attempt
    got it right, the corrected solution)."""
    out: list[str] = []
    if c is not None and c.quote.strip() and _quoted(c.quote, steps):
        out.append(f'Deciding step: "{shorten(c.quote.strip(), limits.distiller_reply_quote_chars)}"')
    if c is not None and level == Level.PATTERN and c.example.strip():
        out.append(shorten(c.example.strip(), limits.distiller_reply_quote_chars))
    if level == Level.CASE:
        out.append(_worked_example(question, answer, steps, zone, limits, trust_feedback))
    return out


def _quoted(quote: str, steps: list[StepRecord]) -> bool:
    """Whether `quote` is what it claims to be, a step copied from an attempt (spacing, case and punctuation
    aside). A model that cannot find the step invents one, and an invented "deciding step" misleads whoever reads
    the lesson."""
    wanted = squash(quote)
    return len(wanted) >= 3 and any(wanted in squash(s.attempt) for s in steps)


def _case_summary(
    question: str, answer: str, steps: list[StepRecord], zone: Zone, limits: Limits, trust_feedback: bool
) -> str:
    """The case in plain facts, for when the model wrote nothing usable."""
    q = shorten(question, limits.distiller_summary_question_chars)
    if zone == Zone.GOLDEN:
        win = next(s for s in steps if s.correct)
        return f"Solved: {q} Answer: {shorten(win.extracted or win.attempt, limits.distiller_summary_answer_chars)}"
    loss = next(s for s in steps if not s.correct)
    wrong = shorten(loss.extracted or loss.attempt, limits.distiller_summary_answer_chars)
    win = next((s for s in steps if s.correct), None)
    right = (win.extracted or "") if win is not None else answer
    right = f" Right answer: {shorten(right, limits.distiller_summary_answer_chars)}." if right.strip() else ""
    why = _why(loss, trust_feedback)
    why = f" {shorten(why, limits.distiller_feedback_chars)}" if why else ""
    return f"Failed: {q} Wrong answer: {wrong}.{right}{why}"


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
