"""Experiences for tests, with every field a test does not care about filled in."""

from __future__ import annotations

from flexlearn.experience import Experience, Level, Provenance, Zone
from flexlearn.library.store import Library


def make(
    content: str,
    *,
    zone: Zone = Zone.GOLDEN,
    level: Level = Level.PATTERN,
    title: str = "lesson",
    examples: list[str] | None = None,
    parent_id: str | None = None,
    problem_ids: list[str] | None = None,
) -> Experience:
    return Experience(
        zone=zone,
        level=level,
        title=title,
        content=content,
        examples=examples or [],
        parent_id=parent_id,
        provenance=Provenance(task="math", problem_ids=problem_ids or []),
    )


def fill(lib: Library) -> Library:
    """Four lessons: two about triangles (one golden pattern, one warning case), cooking, and modular arithmetic."""
    lib.add(make("Pick bases by the triangle area formula; use Heron's formula", title="triangle area"), reason="r")
    lib.add(make("Cook pasta in salted boiling water", title="cooking"), reason="r")
    lib.add(make("Check modular arithmetic: reduce mod 9 before dividing", title="modular"), reason="r")
    lib.add(
        make(
            "Heron area computations overflow; factor first",
            zone=Zone.WARNING,
            level=Level.CASE,
            title="triangle pitfalls",
        ),
        reason="r",
    )
    return lib
