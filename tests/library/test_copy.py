"""Copying a library between backends (`flexlearn.library.copy`, `flex library copy`): a file to a PostgreSQL
database and back arrives identical, table by table and field by field, and the copy is a working library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.copy import TABLES, copy_library
from flexlearn.library.formats import export_json, import_file
from flexlearn.library.outcomes import Outcome
from flexlearn.library.store import Library
from tests.library.builders import make
from tests.support import postgres
from tests.support.cli import flex


def grow(lib: Library, tmp_path: Path) -> Library:
    """A library that uses every table and every kind of change: a parent added after its child, a merge, a
    discard, an edit, a delete (a gap in `seq`), counters, an import left in quarantine and one approved, runs with
    problems recorded out of order, outcomes queued, failed and absorbed, and settings."""
    case = lib.add(make("Check the units of every term", level=Level.CASE, title="units"), reason="r", run_id="l1")
    principle = lib.add(
        make("Dimensional analysis first — ünïcode, 数学", level=Level.PRINCIPLE, examples=["m/s", "kg·m"]),
        reason="r",
        run_id="l1",
        problem_id="p1",
    )
    lib.set_parent(case.id, principle.id)
    gone = lib.add(make("to be deleted", zone=Zone.WARNING), reason="r")
    lib.merge(principle.id, content="Dimensional analysis, always", examples=None, candidate=make("x"), reason="m")
    lib.discard(make("a duplicate"), reason="dup", run_id="l1", problem_id="p2")
    lib.delete(gone.id, reason="wrong")
    lib.edit(case.id, reason="clearer", title="units of terms")
    lib.record_retrieval([case.id, case.id, principle.id])
    lib.record_outcome([case.id], helped=True)
    lib.record_outcome([principle.id], helped=False)
    export = tmp_path / "shared.json"
    with Library.open(tmp_path / "other.flexlib") as other:
        other.add(Experience(zone=Zone.GOLDEN, level=Level.PATTERN, title="t", content="shared A", id="A"), reason="r")
        other.add(Experience(zone=Zone.GOLDEN, level=Level.PATTERN, title="t", content="shared B", id="B"), reason="r")
        export_json(other, export)
    import_file(lib, export, run_id="import-1")
    lib.approve("A")
    lib.begin_run("l1", kind="learn", config={"task": "math", "problem_ids": ["p2", "p1", "p3"]})
    lib.record_problem("l1", "p2", status="solved", trajectory={"steps": ["b"]})
    lib.record_problem("l1", "p1", status="unsolved", trajectory={"steps": ["a"], "note": "ü"})
    lib.record_problem("l1", "p2", status="failed", trajectory={"steps": ["b", "again"]})
    lib.begin_run("e1", kind="eval", config={"task": "math"})
    lib.finish_run("e1")
    first = lib.enqueue_outcome(Outcome.of("What is 2+2?", "4", correct=True, answer="4"))
    second = lib.enqueue_outcome(Outcome.of("What is 3+3?", "7", correct=False, guidance=[case.id]))
    lib.enqueue_outcome(Outcome.of("What is 4+4?", "8", correct=True))
    with lib.transaction():
        lib.mark_absorbed(first, {"actions": ["add"], "experience_ids": [case.id]})
    lib.mark_failed(second, "model unreachable")
    lib.set_meta("task", "math")
    lib.set_meta("note", "ünïcode setting")
    return lib


def dump(lib: Library) -> dict[str, Any]:
    """Every row of every table, in key order (and the settings), as the library reads them."""
    with lib.snapshot():
        tables = {
            table: [tuple(r) for r in lib._conn.execute(f"SELECT {columns} FROM {table} ORDER BY {key}").fetchall()]
            for table, (columns, key) in TABLES.items()
        }
        tables["meta"] = [tuple(r) for r in lib._conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall()]
    return tables


def views(lib: Library) -> dict[str, Any]:
    """The same library through its API: entries, log, runs and where they stand, the queue, summary, hash."""
    return {
        "entries": lib.list(),
        "events": lib.events(),
        "runs": lib.runs(),
        "problems": {r.run_id: lib.problem_status(r.run_id) for r in lib.runs()},
        "trajectory": lib.trajectory("l1", "p2"),
        "queue": [lib.outcome(o.id) for o in lib.queued_outcomes(limit=100)],
        "queue_stats": lib.queue_stats(),
        "stats": lib.stats(),
        "hash": lib.content_hash(),
        "revision": lib.revision(),
    }


def test_a_file_copies_to_a_file_identically(tmp_path: Path) -> None:
    with Library.open(tmp_path / "a.flexlib") as a, Library.open(tmp_path / "b.flexlib") as b:
        copied = copy_library(grow(a, tmp_path), b)
        assert dump(b) == dump(a) and views(b) == views(a)
        assert (copied.experiences, copied.events, copied.runs, copied.run_problems) == (
            a.count(),
            len(a.events()),
            2,
            2,
        )
        assert (copied.outcomes, copied.meta) == (3, 2)


def test_a_file_to_postgresql_and_back_is_identical(tmp_path: Path, postgres_server: postgres.PostgresServer) -> None:
    url = postgres_server.new_database()
    try:
        with Library.open(tmp_path / "a.flexlib") as a, Library.open(url) as b:
            grow(a, tmp_path)
            copy_library(a, b)
            with Library.open(tmp_path / "c.flexlib") as c:
                copy_library(b, c)
                assert dump(a) == dump(b) == dump(c)
                assert views(a) == views(b) == views(c)
            # The copy on the server is a working library: its search index and its keys follow the rows.
            found = [e.id for e, _ in b.search("dimensional analysis")]
            assert found == [e.id for e, _ in a.search("dimensional analysis")] and found
            seq = max(r[0] for r in dump(b)["experiences"])
            added = b.add(make("a lesson written after the copy"), reason="r")
            assert b._conn.execute("SELECT seq FROM experiences WHERE id = ?", (added.id,)).fetchone()[0] > seq
            assert b.revision() > a.revision()
            assert b.resumable_run("learn", task="math", problem_ids=["p2", "p1", "p3"]) == "l1"
    finally:
        postgres_server.drop_database(url)


def test_a_copy_goes_only_into_an_empty_library_and_a_refused_one_changes_nothing(tmp_path: Path) -> None:
    with Library.open(tmp_path / "a.flexlib") as a, Library.open(tmp_path / "b.flexlib") as b:
        a.add(make("one"), reason="r")
        b.set_meta("task", "gsm8k")
        with pytest.raises(LibraryError, match="not empty"):
            copy_library(a, b)
        with pytest.raises(LibraryError, match="onto itself"):
            copy_library(a, a)
        assert b.count() == 0 and b.get_meta("task") == "gsm8k"


def test_flex_library_copy_moves_a_library_to_postgresql_and_back(
    tmp_path: Path, postgres_server: postgres.PostgresServer
) -> None:
    source = tmp_path / "a.flexlib"
    with Library.open(source) as a:
        grow(a, tmp_path)
        expected = dump(a)
    url = postgres_server.new_database()
    try:
        there = json.loads(flex("library", "copy", str(source), url, "--json").stdout)
        assert there["experiences"] == len(expected["experiences"]) and there["to"] == url
        stats = json.loads(flex("library", "stats", url, "--json").stdout)
        assert stats["total"] == len(expected["experiences"])
        back = tmp_path / "back.flexlib"
        flex("library", "copy", url, str(back))
        refused = flex("library", "copy", str(source), url, check=False)
        assert refused.returncode == 2 and "not empty" in refused.stderr
        with Library.open(back) as c:
            assert dump(c) == expected
    finally:
        postgres_server.drop_database(url)
