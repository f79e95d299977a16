"""The outcome queue in the library file: enqueue is one short write, an outcome is marked absorbed only together
with the transaction that applies it (and only once), failures are counted and kept, old files gain the table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flexlearn.errors import LibraryError
from flexlearn.library import schema
from flexlearn.library.outcomes import Outcome, OutcomeTaken
from flexlearn.library.store import Library
from tests.library.builders import make


def outcome(n: int = 0, **fields: object) -> Outcome:
    return Outcome.of(f"What is the sum of {n} and 1?", f"{n + 2}", correct=False, **fields)  # type: ignore[arg-type]


def test_enqueue_keeps_every_field_and_queues_in_order(lib: Library) -> None:
    first = outcome(1, answer="2", feedback="off by one", category="math", guidance=["e1", "e2"], actor="bot")
    ids = [lib.enqueue_outcome(first), lib.enqueue_outcome(outcome(2)), lib.enqueue_outcome(outcome(3))]
    assert len(set(ids)) == 3
    queued = lib.queued_outcomes(limit=2)
    assert [q.id for q in queued] == ids[:2]
    assert queued[0].outcome == first and queued[0].status == "queued" and queued[0].attempts == 0
    assert first.problem_id.startswith("q-") and first.run_id.startswith("record-")
    assert outcome(1).problem_id == first.problem_id  # the same question, the same problem id
    assert [q.id for q in lib.queued_outcomes(limit=8, skip={ids[0]})] == ids[1:]
    stats = lib.queue_stats()
    assert (stats["queued"], stats["absorbed"], stats["failed"], stats["retrying"]) == (3, 0, 0, 0)
    assert stats["oldest_queued_at"] == queued[0].created_at and stats["errors"] == []


def test_absorbed_commits_with_the_changes_or_not_at_all(lib: Library) -> None:
    id = lib.enqueue_outcome(outcome())
    with pytest.raises(RuntimeError), lib.transaction():
        lib.add(make("a lesson"), reason="r")
        lib.mark_absorbed(id, {"actions": {"add": 1}})
        raise RuntimeError("killed before the commit")
    assert lib.outcome(id).status == "queued" and lib.count() == 0  # type: ignore[union-attr]
    with lib.transaction():
        lib.add(make("a lesson"), reason="r")
        lib.mark_absorbed(id, {"actions": {"add": 1}})
    done = lib.outcome(id)
    assert done is not None and done.status == "absorbed" and done.result == {"actions": {"add": 1}}
    assert done.absorbed_at is not None and lib.queued_outcomes() == []
    # A second absorber that read it while it was queued cannot apply it again: its transaction rolls back.
    with pytest.raises(OutcomeTaken, match="absorbed already"), lib.transaction():
        lib.add(make("the same outcome again"), reason="r")
        lib.mark_absorbed(id, {})
    assert lib.count() == 1


def test_failures_are_counted_then_kept_as_failed_and_can_be_requeued(lib: Library) -> None:
    id = lib.enqueue_outcome(outcome())
    assert lib.mark_failed(id, "model unreachable", max_attempts=3) == "queued"
    assert lib.mark_failed(id, "model unreachable again", max_attempts=3) == "queued"
    assert lib.queue_stats()["retrying"] == 1
    assert lib.mark_failed(id, "still unreachable", max_attempts=3) == "failed"
    failed = lib.outcome(id)
    assert failed is not None and failed.attempts == 3 and failed.error == "still unreachable"
    stats = lib.queue_stats()
    assert (stats["queued"], stats["failed"]) == (0, 1)
    assert stats["errors"] == [
        {"id": id, "status": "failed", "attempts": 3, "error": "still unreachable", "updated_at": failed.updated_at}
    ]
    assert lib.requeue_failed() == 1
    again = lib.outcome(id)
    assert again is not None and again.status == "queued" and again.attempts == 0


def test_an_older_library_gains_the_queue_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    raw = sqlite3.connect(path)
    for step in schema.MIGRATIONS[:2]:
        step(raw)
    raw.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    raw.execute(
        "INSERT INTO experiences(id, zone, level, title, content, examples, provenance, created_at, updated_at)"
        " VALUES ('old', 'golden', 'pattern', 't', 'old lesson', '[]', '{}', 0, 0)"
    )
    raw.commit()
    raw.close()
    # Read-only, an older file is refused as before: upgrading it is a write.
    with pytest.raises(LibraryError, match="older library format"):
        Library.open(path, read_only=True)
    with Library.open(path) as lib:
        assert lib.get("old").content == "old lesson" and lib.stats()["schema_version"] == 3
        lib.enqueue_outcome(outcome())
    with Library.open(path, read_only=True) as lib:
        assert lib.queue_stats()["queued"] == 1
        with pytest.raises(LibraryError, match="read-only"):
            lib.enqueue_outcome(outcome(2))
