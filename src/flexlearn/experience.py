"""The experience: FLEX's unit of learned knowledge. Plain data, no behaviour beyond (de)serialisation."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Zone(StrEnum):
    """Golden: what worked and should be repeated. Warning: what failed, and why."""

    GOLDEN = "golden"
    WARNING = "warning"


class Level(StrEnum):
    """Abstraction level, from the most general to the most concrete. A case's parent is a pattern,
    a pattern's parent is a principle."""

    PRINCIPLE = "principle"
    PATTERN = "pattern"
    CASE = "case"


# The one place the hierarchy's order is written: general before concrete, golden before warning.
LEVEL_RANK: dict[Level, int] = {level: i for i, level in enumerate(Level)}
ZONE_RANK: dict[Zone, int] = {zone: i for i, zone in enumerate(Zone)}

LEVEL_PARENT: dict[Level, Level | None] = {
    Level.PRINCIPLE: None,
    Level.PATTERN: Level.PRINCIPLE,
    Level.CASE: Level.PATTERN,
}


@dataclass
class Provenance:
    """Where an experience came from."""

    task: str = ""
    problem_ids: list[str] = field(default_factory=list)
    model: str = ""  # the model that wrote it (the distiller's, for a learned experience)
    run_id: str = ""
    source: str = "learned"  # learned | imported:<format> | manual
    actor: str = ""  # the model (or the user's own agent) whose attempts it was learned from
    # For an imported entry: the file it came from, and what that file said about the entry's origin (its own
    # provenance and counters), kept for reference but never taken as ours.
    origin: str = ""
    claimed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        """The inverse of `dataclasses.asdict`; missing keys take their defaults and unknown ones are ignored, so
        provenance written by another flexlearn version still reads."""
        return cls(
            task=str(data.get("task", "")),
            problem_ids=[str(p) for p in data.get("problem_ids", [])],
            model=str(data.get("model", "")),
            run_id=str(data.get("run_id", "")),
            source=str(data.get("source", "learned")),
            actor=str(data.get("actor", "")),
            origin=str(data.get("origin", "")),
            claimed=dict(claimed) if isinstance(claimed := data.get("claimed"), dict) else {},
        )


@dataclass
class Experience:
    zone: Zone
    level: Level
    title: str
    content: str
    examples: list[str] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)
    parent_id: str | None = None
    id: str = ""
    retrieved: int = 0
    helped: int = 0
    hurt: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    status: str = "active"  # a `Status`: quarantined entries are never retrieved

    def content_id(self) -> str:
        """A deterministic id from the experience's identity, so that the same run gives the same ids."""
        key = "\x1f".join([self.zone, self.level, self.title.strip(), self.content.strip()])
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["zone"] = str(self.zone)
        data["level"] = str(self.level)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experience:
        """The inverse of `to_dict`, and the one way an experience is read back: from a library row (its JSON
        columns decoded), an exported file, or an event's snapshot. Values are coerced to their types; missing
        optional keys take their defaults and unknown keys are ignored. Data that is not an experience raises
        KeyError, ValueError, TypeError or AttributeError."""
        return cls(
            zone=Zone(data["zone"]),
            level=Level(data["level"]),
            title=str(data.get("title", "")),
            content=str(data["content"]),
            examples=[str(e) for e in data.get("examples", [])],
            provenance=Provenance.from_dict(data.get("provenance") or {}),
            parent_id=data.get("parent_id"),
            id=str(data.get("id", "")),
            retrieved=int(data.get("retrieved", 0)),
            helped=int(data.get("helped", 0)),
            hurt=int(data.get("hurt", 0)),
            created_at=float(data.get("created_at", time.time())),
            updated_at=float(data.get("updated_at", time.time())),
            status=str(Status(data.get("status", Status.ACTIVE))),
        )

    def approx_tokens(self) -> int:
        """A cheap token estimate (4 characters a token) used for retrieval budgets."""
        text = self.title + self.content + "".join(self.examples)
        return max(1, len(text) // 4)


class Status(StrEnum):
    """Whether retrieval may show an experience to a model. Imported entries wait in quarantine until a person
    approves them (`flex library review`)."""

    ACTIVE = "active"
    QUARANTINED = "quarantined"


class Action(StrEnum):
    ADD = "add"
    MERGE = "merge"
    DISCARD = "discard"
    EDIT = "edit"
    DELETE = "delete"
    IMPORT = "import"
    APPROVE = "approve"


@dataclass
class Event:
    """One line of the library's append-only log: what the updater (or a user) did, and why."""

    seq: int
    action: Action
    experience_id: str | None
    reason: str
    run_id: str
    problem_id: str | None
    candidate: dict[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: float
