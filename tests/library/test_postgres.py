"""What only a library on a PostgreSQL server does: opening by URL, refusing what is not a library, read-only
connections, the schema kept in step with the file's, and a URL's password kept out of messages. (Everything a
library does is tested on both backends by the other library tests.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flexlearn.errors import LibraryError
from flexlearn.library import schema
from flexlearn.library.backend import is_url, postgres
from flexlearn.library.store import Library
from tests.library.builders import make
from tests.support.postgres import PostgresServer

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[postgres]'")


@pytest.fixture
def url(postgres_server: PostgresServer) -> Iterator[str]:
    made = postgres_server.new_database()
    yield made
    postgres_server.drop_database(made)


def test_urls_pick_the_server_and_paths_the_file() -> None:
    assert is_url("postgresql://u@h/db") and is_url("postgres://h/db")
    assert not is_url("lib.flexlib") and not is_url("postgresql.flexlib")


def test_the_schema_has_the_files_versions() -> None:
    assert len(postgres.MIGRATIONS) == len(schema.MIGRATIONS) == Library.SCHEMA_VERSION


def test_an_empty_database_becomes_a_library_unless_told_not_to(url: str) -> None:
    with pytest.raises(LibraryError, match="empty, not a flexlearn library"):
        Library.open(url, create=False)
    with pytest.raises(LibraryError, match="empty, not a flexlearn library"):
        Library.open(url, read_only=True)
    with psycopg.connect(url) as raw:
        assert raw.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
    with Library.open(url) as lib:
        assert lib.path is None and lib.location == url and repr(lib) == f"Library({url!r})"
        assert lib.get_meta("schema_version") == str(Library.SCHEMA_VERSION)


def test_a_database_holding_other_tables_is_refused_untouched(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(LibraryError, match="holds other tables but no flexlearn library"):
        Library.open(url)
    with psycopg.connect(url) as raw:
        tables = raw.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == [("users",)]


def test_a_library_of_a_newer_schema_is_refused(url: str) -> None:
    Library.open(url).close()
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LibraryError, match=r"schema version 99.*upgrade flexlearn"):
        Library.open(url)


def test_a_read_only_connection_reads_and_refuses_every_write(url: str) -> None:
    with Library.open(url) as lib:
        kept = lib.add(make("kept"), reason="r")
    with Library.open(url, read_only=True) as reader:
        assert reader.read_only and reader.get(kept.id).content == "kept"
        with pytest.raises(LibraryError, match=f"cannot write to {url}"):
            reader.add(make("new"), reason="r")
        with pytest.raises(LibraryError, match="cannot write to"):
            reader.check_writable()
        assert reader.count() == 1


def test_a_missing_database_or_server_is_a_library_error(postgres_server: PostgresServer) -> None:
    with pytest.raises(LibraryError, match=r"cannot open library .*nosuchdb: the server has no database 'nosuchdb'"):
        Library.open(postgres_server.url("nosuchdb"))
    with pytest.raises(LibraryError, match=r"cannot reach the PostgreSQL server of postgresql://flex@127\.0\.0\.1:1/x"):
        Library.open("postgresql://flex@127.0.0.1:1/x?connect_timeout=2")


def test_a_password_never_reaches_a_message() -> None:
    assert postgres.redact("postgresql://me:s3cret@db.example:5432/lib") == "postgresql://me:***@db.example:5432/lib"
    assert postgres.redact("postgresql://db/lib?sslmode=require&password=s3cret") == (
        "postgresql://db/lib?sslmode=require&password=***"
    )
    with pytest.raises(LibraryError) as refused:
        Library.open("postgresql://me:s3cret@127.0.0.1:1/lib?connect_timeout=2")
    assert "s3cret" not in str(refused.value) and "me:***@" in str(refused.value)


def test_two_libraries_share_a_database_in_schemas_of_their_own(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("CREATE SCHEMA team_a")
        raw.execute("CREATE SCHEMA team_b")
    a_url, b_url = (f"{url}?options=-csearch_path%3D{name}" for name in ("team_a", "team_b"))
    with Library.open(a_url) as a, Library.open(b_url) as b:
        a.add(make("only in a"), reason="r")
        with a.transaction():  # each holds its own writer lock: b writes while a's transaction is open
            a.add(make("also in a"), reason="r")
            b.add(make("only in b"), reason="r")
        assert [e.content for e in a.list()] == ["only in a", "also in a"]
        assert [e.content for e in b.list()] == ["only in b"]
