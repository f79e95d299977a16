"""Opening a library file: creation, WAL, refusing what is not a library, and migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flexlearn.errors import LibraryError
from flexlearn.library import schema
from flexlearn.library.store import Library
from tests.library.builders import make


def test_open_creates_a_wal_file_with_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    with Library.open(path) as lib:
        assert lib.path == path
        assert lib._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
    assert Library.SCHEMA_VERSION == 3
    raw.close()


def test_open_without_create_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match=r"no library at .*missing\.db"):
        Library.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_open_a_file_that_is_not_sqlite_names_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, long enough to have a header " * 20)
    with pytest.raises(LibraryError, match=r"notes\.txt"):
        Library.open(path)


def test_open_an_unrelated_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE users (name TEXT)")
    raw.close()
    with pytest.raises(LibraryError, match="not a flexlearn library"):
        Library.open(path)


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    Library.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(LibraryError, match=r"schema version 99.*upgrade flexlearn"):
        Library.open(path)


def test_migrations_run_in_order_and_keep_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lib.db"
    with Library.open(path) as lib:
        kept = lib.add(make("keep me"), reason="r")

    def add_weight(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE experiences ADD COLUMN weight REAL NOT NULL DEFAULT 1.0")

    newer = len(schema.MIGRATIONS) + 1
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, add_weight])
    monkeypatch.setattr(Library, "SCHEMA_VERSION", newer)
    with Library.open(path) as lib:
        assert lib.get(kept.id).content == "keep me"
        assert lib.stats()["schema_version"] == newer
        assert lib._conn.execute("SELECT weight FROM experiences").fetchone()[0] == 1.0
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(newer)
    raw.close()


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    with Library.open(path) as lib:
        exp = lib.add(make("persist", examples=["e1"], problem_ids=["p1"]), reason="r")
    with Library.open(path, create=False) as lib:
        again = lib.get(exp.id)
    assert again == exp
    assert again.provenance.problem_ids == ["p1"]
