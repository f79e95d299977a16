"""The updater: for each candidate, compare with its k nearest entries (never the whole library) and decide
add, merge or discard. Exact duplicates and empty neighbourhoods are decided without a model call."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from flexlearn.agents.templates import build, copies_example, shorten, squash
from flexlearn.experience import Action, Experience, Level
from flexlearn.limits import DEFAULT_LIMITS, Limits
from flexlearn.models.base import ChatModel, GenerationOptions, Usage
from flexlearn.models.middleware import Meter
from flexlearn.models.structured import generate_structured


class DecisionReply(BaseModel):
    action: Literal["add", "merge", "discard"]
    target: str = Field(default="", max_length=24)
    merged_content: str = Field(default="", max_length=DEFAULT_LIMITS.updater_reply_merged_chars)
    reason: str = Field(max_length=DEFAULT_LIMITS.updater_reply_reason_chars)


# A merged text must keep at least this share of the target's words, or it replaced the target instead.
MERGE_KEEPS = 0.3


def _concatenates(target: str, candidate: str, merged: str) -> bool:
    """Whether `merged` is the two lessons written one after the other rather than one lesson that covers both: a
    small updater "merges" two different lessons that way, and every further merge makes the entry longer and
    less readable. Two different lessons are two entries."""
    kept_whole = squash(target)
    return bool(kept_whole) and kept_whole in squash(merged) and _kept(candidate, merged) > 0.8


# Words about the library rather than the problem: a small updater writes its deliberation into the merged text
# ("This statement is a direct application of the golden principle, math, ... of the original entry").
_LIBRARY_TALK = re.compile(
    r"\b(?:golden|warning) (?:zone|principle|pattern|case)\b|\b(?:original|existing|new|candidate) entry\b"
    r"|\bthe candidate\b|\bthis (?:statement|entry|lesson)\b",
    re.IGNORECASE,
)


def _talks_about_the_library(merged: str, *sources: str) -> bool:
    """Whether `merged` speaks of entries and zones where neither lesson it merges does."""
    return bool(_LIBRARY_TALK.search(merged)) and not any(_LIBRARY_TALK.search(s) for s in sources)


def _kept(original: str, merged: str) -> float:
    """The share of `original`'s distinct words that `merged` still contains."""
    before = set(squash(original).split())
    return len(before & set(squash(merged).split())) / len(before) if before else 1.0


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
            return Decision(Action.DISCARD, f"discarded: exact duplicate of {n.id}", target=n.id)
    if not neighbours:
        return Decision(Action.ADD, "added: no similar entry in the library")
    if candidate.level == Level.CASE:
        # A case is one problem's record: two different problems are two cases, however alike (a small updater
        # merges them readily, and the merged case no longer matches either problem). Only copies are dropped.
        return Decision(Action.ADD, "added: a case of its own problem (cases are merged only when identical)")

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
        # Keeping the candidate loses nothing; the event log records that the updater's reply was unusable.
        return Decision(Action.ADD, f"added: the updater's reply was unusable ({result.error})", usage=result.usage)
    v = result.value
    reason = v.reason.strip() or "no reason given"
    if copies_example(reason, "updater"):
        reason = "no reason given (the updater copied its prompt's example)"
    # The neighbours shown are the entries the candidate may be merged into (same zone and level); a named target
    # outside them falls back to the nearest one, which is the entry the candidate is closest to.
    shown = {n.id: n for n in neighbours}
    named = shown.get(v.target.strip().strip("[]"))
    target = named or neighbours[0]
    unnamed = "" if named else f" (the updater named {v.target.strip() or 'no entry'}; the nearest is {target.id})"
    if v.action == "discard":
        return Decision(
            Action.DISCARD, f"discarded as covered by {target.id}{unnamed}: {reason}", target.id, usage=result.usage
        )
    if v.action == "merge":
        if (target.zone, target.level) != (candidate.zone, candidate.level):
            # A merge across zones or levels would blur what worked with what failed.
            why = f"added: {target.id} is of another zone or level ({reason})"
            return Decision(Action.ADD, why, usage=result.usage)
        merged = v.merged_content.strip()
        if merged == target.content.strip():
            # The "merge" keeps the entry as it is: the candidate adds nothing to it.
            why = f"discarded as covered by {target.id}{unnamed}: {reason}"
            return Decision(Action.DISCARD, why, target.id, usage=result.usage)
        if merged and _kept(target.content, merged) < MERGE_KEEPS:
            # Not a merge but a replacement: the target's lesson would be lost (a small updater writes the
            # candidate's text over the target's). Keep both instead.
            why = f"added: the merged text dropped what {target.id} said ({reason})"
            return Decision(Action.ADD, why, usage=result.usage)
        if merged and _concatenates(target.content, candidate.content, merged):
            why = f"added: the merged text only strings {target.id} and the candidate together ({reason})"
            return Decision(Action.ADD, why, usage=result.usage)
        if merged and _talks_about_the_library(merged, target.content, candidate.content):
            why = f"added: the merged text speaks of the library, not the problem ({reason})"
            return Decision(Action.ADD, why, usage=result.usage)
        if not merged or copies_example(merged, "updater"):
            # The model named a merge but wrote no usable text. Writing the two one after the other would be the
            # concatenation refused above: keep the candidate as its own entry.
            why = f"added: the updater named a merge into {target.id} but wrote no usable merged text ({reason})"
            return Decision(Action.ADD, why, usage=result.usage)
        return Decision(
            Action.MERGE,
            f"merged into {target.id}{unnamed}: {reason}",
            target=target.id,
            merged_content=merged,
            usage=result.usage,
        )
    return Decision(Action.ADD, f"added: {reason}", usage=result.usage)
