"""The read-only snapshot reader: one read transaction sees one moment of the file, whatever another connection
commits meanwhile; and the reads a derived index needs (revision, changed ids, active rows, counts)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from flexlearn.experience import Level, Status, Zone
from flexlearn.library import snapshot
from flexlearn.library.reader import LibraryReader, LibrarySource, source_of
from flexlearn.library.snapshot import FileSource, SnapshotReader
from flexlearn.library.store import Library
from tests.library.builders import make

# SnapshotReader reads the file beside a library for the index kept next to it; a library on a server has neither.
pytestmark = pytest.mark.sqlite_only("SnapshotReader reads a library file")


def test_a_write_between_two_reads_of_one_snapshot_is_not_seen(lib: Library) -> None:
    first = lib.add(make("first lesson", title="first"), reason="r")
    with SnapshotReader(lib.path) as reader:
        with reader.snapshot():
            revision = reader.revision()
            assert [row[0] for row in reader.active_rows()] == [first.id]
            second = lib.add(make("second lesson", title="second"), reason="r")  # another connection commits
            lib.edit(first.id, reason="r", title="renamed")
            assert reader.revision() == revision
            assert reader.changed_since(revision) == [] and reader.last_changes_since(revision) == {}
            assert [row[3] for row in reader.active_rows()] == ["first"]
            assert list(reader.active_rows([second.id])) == []
            assert reader.count() == 1 and reader.counts_by_zone_level() == {("golden", "pattern"): 1}
        # After the snapshot, each read sees the file as committed.
        assert reader.revision() > revision
        assert set(reader.changed_since(revision)) == {first.id, second.id}
        assert sorted(row[3] for row in reader.active_rows()) == ["renamed", "second"]


def test_reads_for_an_index(lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "_BATCH", 2)  # several `IN (...)` batches
    reader = SnapshotReader.of(lib)
    assert reader.revision() == 0 and reader.stamp(0) is None and reader.count() == 0
    assert (
        list(reader.active_rows()) == [] and list(reader.active_rows([])) == [] and reader.counts_by_zone_level() == {}
    )
    added = [
        lib.add(make(f"lesson {i}", title=f"t{i}", examples=[f"e{i}"], zone=zone, level=level), reason="r")
        for i, (zone, level) in enumerate([(Zone.GOLDEN, Level.PATTERN)] * 3 + [(Zone.WARNING, Level.CASE)] * 2)
    ]
    held = lib.add(replace(make("imported lesson", title="held"), status=str(Status.QUARANTINED)), reason="r")
    revision = reader.revision()
    assert revision == 6 and isinstance(reader.stamp(revision), float)
    ids = [e.id for e in added]
    rows = list(reader.active_rows([*ids, held.id, "missing"]))  # quarantined and missing ids are left out
    assert sorted(rows) == sorted(
        (e.id, str(e.zone), str(e.level), e.title, e.content, f'["{e.examples[0]}"]') for e in added
    )
    assert list(reader.active_rows([])) == []  # no ids: no rows, not all of them
    assert sorted(row[0] for row in reader.active_rows()) == sorted(ids)
    assert reader.counts_by_zone_level() == {("golden", "pattern"): 3, ("warning", "case"): 2}
    lib.delete(ids[0], reason="r")
    lib.edit(ids[1], reason="r", content="changed")
    lib.edit(ids[1], reason="r", content="changed again")
    assert sorted(reader.changed_since(revision)) == sorted(ids[:2])
    assert reader.last_changes_since(revision) == {ids[0]: revision + 1, ids[1]: revision + 3}
    assert reader.count() == 5  # of every status
    reader.close()


def test_it_is_the_files_reader_and_its_source(lib: Library) -> None:
    assert lib.path is not None
    source = source_of(lib)
    assert isinstance(source, FileSource) and isinstance(source, LibrarySource) and source.path == lib.path
    with source.reader() as reader:
        assert isinstance(reader, LibraryReader) and reader.identity() == str(lib.path.resolve())
    key = source.key
    assert key == FileSource(lib.path).key and key[1] == str(lib.path.resolve())
    for made in lib.path.parent.glob(lib.path.name + "*"):  # made again at the same path: another inode, another key
        made.unlink()
    with Library.open(lib.path) as again:
        assert source_of(again).key != key


def test_it_never_writes(lib: Library) -> None:
    with SnapshotReader(lib.path) as reader, pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._conn.execute("DELETE FROM experiences")


def test_the_rows_of_some_ids_are_read_by_the_id_index(lib: Library) -> None:
    # Without statistics SQLite's planner took the status index for five ids or more, reading every active entry
    # for each catch-up of an index (200 ms neighbour searches for concurrent writers at 100k entries).
    for i in range(30):
        lib.add(make(f"lesson {i}"), reason="r")
    ids = [e.id for e in lib.list()][:10]
    assert lib.path is not None
    with SnapshotReader(lib.path) as reader:
        ran: list[str] = []
        reader._conn.set_trace_callback(ran.append)  # each statement as run, its values in place
        assert sorted(r[0] for r in reader.active_rows(ids)) == sorted(ids)
        reader._conn.set_trace_callback(None)
        [query] = [q for q in ran if q.lstrip().upper().startswith("SELECT")]
        plan = str(reader._conn.execute("EXPLAIN QUERY PLAN " + query).fetchall())
    assert "experiences_status" not in plan and "(id=?)" in plan
