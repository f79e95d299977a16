"""The read-only reader of a library on a PostgreSQL server (`ServerSnapshotReader`): the same reads and row shapes
as the file's `SnapshotReader`, a snapshot that sees one moment of the library whatever another connection commits,
a connection that never writes, an identity without the password, and a library dropped and made again at the same
URL told apart from the one the reader was opened on."""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest

from flexlearn.experience import Level, Status, Zone
from flexlearn.library import server_snapshot
from flexlearn.library.reader import LibraryReader, LibraryReplacedError, LibrarySource, source_of
from flexlearn.library.server_snapshot import ServerSnapshotReader, ServerSource
from flexlearn.library.store import Library
from tests.library.builders import make
from tests.support import postgres


def schema_url(url: str, schema: str) -> str:
    """`url` with its search_path set to `schema` (one library per schema of one database)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode([("options", f"-csearch_path={schema}")])
    return urllib.parse.urlunsplit(parts._replace(query=query))


def remake_schema(url: str, schema: str) -> None:
    """Drop the schema `schema` of `url`'s database, with the library in it, and create it again, empty."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')


@pytest.fixture
def server_url(postgres_server: postgres.PostgresServer) -> Iterator[str]:
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def lib(server_url: str) -> Iterator[Library]:
    with Library.open(server_url) as lib:
        yield lib


def test_it_is_a_reader_and_its_source_is_the_librarys(lib: Library) -> None:
    source = source_of(lib)
    assert isinstance(source, ServerSource) and isinstance(source, LibrarySource) and source.path is None
    with source.reader() as reader:
        assert isinstance(reader, LibraryReader)
        assert reader.location == lib.location


def test_a_write_between_two_reads_of_one_snapshot_is_not_seen(lib: Library) -> None:
    first = lib.add(make("first lesson", title="first"), reason="r")
    with ServerSnapshotReader.of(lib) as reader:
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
        # After the snapshot, each read sees the library as committed.
        assert reader.revision() > revision
        assert set(reader.changed_since(revision)) == {first.id, second.id}
        assert sorted(row[3] for row in reader.active_rows()) == ["renamed", "second"]


def test_reads_for_an_index(lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_snapshot, "_BATCH", 2)  # several `= ANY(...)` batches
    monkeypatch.setattr(server_snapshot, "_FETCH", 2)  # several round trips of the server-side cursor
    reader = ServerSnapshotReader.of(lib)
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
    assert reader.stamp(revision) == lib.events(since_seq=revision - 1)[0].created_at
    ids = [e.id for e in added]
    rows = list(reader.active_rows([*ids, held.id, "missing"]))  # quarantined and missing ids are left out
    expected = sorted(
        (e.id, str(e.zone), str(e.level), e.title, e.content, f'["{e.examples[0]}"]') for e in added
    )  # the file's row shape: plain tuples, the examples as stored
    assert sorted(rows) == expected and all(type(row) is tuple for row in rows)
    assert list(reader.active_rows([])) == []  # no ids: no rows, not all of them
    every = list(reader.active_rows())
    assert sorted(every) == expected and all(type(row) is tuple for row in every)
    assert reader.counts_by_zone_level() == {("golden", "pattern"): 3, ("warning", "case"): 2}
    lib.delete(ids[0], reason="r")
    lib.edit(ids[1], reason="r", content="changed")
    lib.edit(ids[1], reason="r", content="changed again")
    assert sorted(reader.changed_since(revision)) == sorted(ids[:2])
    assert reader.last_changes_since(revision) == {ids[0]: revision + 1, ids[1]: revision + 3}
    assert reader.count() == 5  # of every status
    lib.approve(held.id)
    assert held.id in {row[0] for row in reader.active_rows()}
    reader.close()
    reader.close()


def test_it_never_writes(lib: Library) -> None:
    with ServerSnapshotReader.of(lib) as reader, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        reader._db.execute("DELETE FROM experiences")


def test_its_identity_names_the_server_database_and_schema_never_the_password(
    postgres_server: postgres.PostgresServer, server_url: str
) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE reader_role LOGIN PASSWORD 'hunter2-secret'")
        conn.execute("CREATE SCHEMA lessons AUTHORIZATION reader_role")
    try:
        parts = urllib.parse.urlsplit(schema_url(server_url, "lessons"))
        with_password = urllib.parse.urlunsplit(
            parts._replace(netloc=f"reader_role:hunter2-secret@{parts.hostname}:{parts.port}")
        )
        with Library.open(with_password) as lib:
            source = source_of(lib)
            assert "hunter2-secret" not in source.location and "hunter2-secret" not in repr(source.key)
            with source.reader() as reader:
                identity = reader.identity()
        database = server_url.rsplit("/", 1)[1]
        assert "hunter2-secret" not in identity
        assert identity.endswith(f"database {database} schema lessons")
        # The same library reached another way (another host name, no password) is named the same.
        other = urllib.parse.urlunsplit(parts._replace(netloc=f"reader_role@localhost:{parts.port}"))
        with ServerSnapshotReader(other) as reader:
            assert reader.identity() == identity
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS lessons CASCADE")
            conn.execute("DROP ROLE IF EXISTS reader_role")


def test_without_the_servers_system_identifier_it_is_named_by_address(server_url: str, lib: Library) -> None:
    with ServerSnapshotReader(server_url) as reader:
        with_id = reader.identity()
        assert with_id.startswith("postgresql system ")

        def refused(sql: str, params: object = (), /) -> object:
            if "pg_control_system" in sql:
                raise psycopg.errors.InsufficientPrivilege("permission denied for function pg_control_system")
            return original(sql, params)

        original = reader._db.execute
        reader._identity = None
        with contextlib.ExitStack() as stack:
            stack.callback(setattr, reader._db, "execute", original)
            reader._db.execute = refused  # type: ignore[method-assign]
            by_address = reader.identity()
    port = urllib.parse.urlsplit(server_url).port
    assert by_address.startswith(f"postgresql host 127.0.0.1 port {port} database ")


def test_a_library_dropped_and_made_again_is_told_apart(server_url: str) -> None:
    url = schema_url(server_url, "lessons")
    remake_schema(server_url, "lessons")
    with Library.open(url) as lib:
        lib.add(make("zebra stripes", title="zebra"), reason="r")
        source = source_of(lib)
        reader = source.reader()
        assert reader.revision() == 1
    remake_schema(server_url, "lessons")
    with Library.open(url) as again:
        again.add(make("okapi stripes", title="okapi"), reason="r")
        with pytest.raises(LibraryReplacedError, match="dropped and made again"):
            reader.revision()
        with pytest.raises(LibraryReplacedError):
            source.reader()
        fresh = source_of(again)
        assert fresh.key != source.key
        with fresh.reader() as current:
            assert current.revision() == 1 and [row[3] for row in current.active_rows()] == ["okapi"]
    reader.close()
