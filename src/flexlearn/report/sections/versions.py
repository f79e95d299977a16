"""The versions section: the library's newest versions (absorbed batches, rollbacks, manual changes) and every
verdict of the regression gate, with its figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flexlearn.records import Versions
from flexlearn.report.format import integer


@dataclass(frozen=True)
class VersionRow:
    version: str
    kind: str
    run: str
    problem: str
    changes: str
    when: str


@dataclass(frozen=True)
class GateRow:
    what: str
    before: str
    after: str
    without: str
    with_batch: str
    diff: str
    interval: str
    kept: bool
    reason: str


@dataclass(frozen=True)
class VersionsSection:
    """What `versions.html.j2` shows."""

    total: str
    shown: int
    rows: list[VersionRow]
    gates: list[GateRow]


def versions(record: Versions) -> VersionsSection:
    rows = [
        VersionRow(
            version=integer(v.version),
            kind=v.kind,
            run=v.run_id or "—",
            problem=v.problem_id or "—",
            changes=", ".join(f"{action} {n}" for action, n in sorted(v.actions.items())),
            when=datetime.fromtimestamp(v.created_at).strftime("%Y-%m-%d %H:%M") if v.created_at else "—",
        )
        for v in reversed(record.recent)  # newest first
    ]
    gates = [
        GateRow(
            what=g.what or g.run_id,
            before=integer(g.before),
            after=integer(g.after),
            without=f"{g.correct_without}/{g.n}",
            with_batch=f"{g.correct_with}/{g.n}",
            diff=f"{g.diff:+.3f}",
            interval=f"{g.ci_low:+.3f} to {g.ci_high:+.3f}",
            kept=not g.rolled_back,
            reason=g.reason,
        )
        for g in reversed(record.gates)
    ]
    return VersionsSection(total=integer(record.total), shown=len(rows), rows=rows, gates=gates)
