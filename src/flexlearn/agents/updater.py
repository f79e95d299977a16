"""The updater: for each candidate, compare with its k nearest entries (never the whole library) and decide
add, merge or discard. Exact duplicates and empty neighbourhoods are decided without a model call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from flexlearn.agents.templates import build, shorten
from flexlearn.experience import Action, Experience
from flexlearn.limits import DEFAULT_LIMITS, Limits
from flexlearn.models.base import ChatModel, GenerationOptions, Usage
from flexlearn.models.middleware import Meter
from flexlearn.models.structured import generate_structured


class DecisionReply(BaseModel):
    action: Literal["add", "merge", "discard"]
    target: str = Field(default="", max_length=24)
    merged_content: str = Field(default="", max_length=DEFAULT_LIMITS.updater_reply_merged_chars)
    reason: str = Field(max_length=DEFAULT_LIMITS.updater_reply_reason_chars)


@dataclass
class Decision:
    action: Action  # ADD, MERGE or DISCARD
    reason: str
    target: str | None = None
    merged_content: str = ""
    usage: Usage | None = None


def _neighbours_text(neighbours: list[Experience], limit: int) -> str:
    return "\n".join(f"[{n.id}] ({n.zone} {n.level}, {n.title}) {shorten(n.content, limit)}" for n in neighbours)


async def decide(
    model: ChatModel,
    candidate: Experience,
    neighbours: list[Experience],
    *,
    options: GenerationOptions | None = None,
    meter: Meter | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Decision:
    same = candidate.content_id()
    for n in neighbours:
        if n.id.split("-")[0] == same or (n.zone, n.level, n.content.strip()) == (
            candidate.zone,
            candidate.level,
            candidate.content.strip(),
        ):
            return Decision(Action.DISCARD, f"exact duplicate of {n.id}")
    if not neighbours:
        return Decision(Action.ADD, "no similar entry in the library")

    prompt = build(
        "updater",
        stop=["\n\n"],
        zone=str(candidate.zone),
        level=str(candidate.level),
        title=candidate.title,
        content=candidate.content,
        neighbours=_neighbours_text(neighbours, limits.updater_neighbour_chars),
        neighbours_short=_neighbours_text(neighbours, limits.updater_neighbour_short_chars),
    )
    result = await generate_structured(model, prompt, DecisionReply, role="updater", options=options, meter=meter)
    if result.value is None:
        # Keeping the candidate loses nothing; the event log records that the updater failed.
        return Decision(Action.ADD, f"updater reply unusable ({result.error}); added by default", usage=result.usage)
    v = result.value
    reason = v.reason.strip() or "no reason given"
    if v.action == "discard":
        return Decision(Action.DISCARD, reason, usage=result.usage)
    if v.action == "merge":
        ids = {n.id: n for n in neighbours}
        target = ids.get(v.target.strip().strip("[]"))
        if target is None or (target.zone, target.level) != (candidate.zone, candidate.level):
            # A merge across zones or levels would blur what worked with what failed.
            why = "is not a shown entry" if target is None else "is of another zone or level"
            return Decision(
                Action.ADD, f"merge target {v.target!r} {why}; added instead ({reason})", usage=result.usage
            )
        merged = v.merged_content.strip() or f"{target.content} {candidate.content}"
        return Decision(Action.MERGE, reason, target=target.id, merged_content=merged, usage=result.usage)
    return Decision(Action.ADD, reason, usage=result.usage)
