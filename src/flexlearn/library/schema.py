"""The SQLite library file's schema: its tables and triggers, the migrations between versions, and the connection
settings (WAL, busy timeout) that let several processes share one file. A PostgreSQL library has the same tables
and versions (`flexlearn.library.backend.postgres`); `check_readable` serves both."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from flexlearn.errors import LibraryError

BUSY_TIMEOUT_S = 30.0

_EXAMPLES_TEXT = "(SELECT group_concat(value, char(10)) FROM json_each({row}.examples))"

# Version 1. The FTS table keeps its own copy of the text rather than being an external-content table:
# it indexes the examples as plain text while the row stores them as JSON, and libraries are small enough
# that the copy costs nothing worth saving.
# Tokenizer: unicode61 splits LaTeX and SMILES at punctuation, so `\frac{a}{b}` indexes `frac`, `a`, `b` and a
# query for `frac` finds it; adding tokenchars such as `^` or `\` would glue `x^2` into one token that a query
# for `x` never meets. Porter on top lets the English prose of lessons match across word forms
# (factorise/factorisation); it leaves numbers and non-words alone.
_SCHEMA_V1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE experiences (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        zone TEXT NOT NULL,
        level TEXT NOT NULL,
        title TEXT NOT NULL,
        content TEXT NOT NULL,
        examples TEXT NOT NULL,
        provenance TEXT NOT NULL,
        parent_id TEXT REFERENCES experiences(id) ON DELETE SET NULL,
        retrieved INTEGER NOT NULL DEFAULT 0,
        helped INTEGER NOT NULL DEFAULT 0,
        hurt INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL)""",
    "CREATE INDEX experiences_zone_level ON experiences(zone, level)",
    "CREATE INDEX experiences_parent ON experiences(parent_id)",
    """CREATE VIRTUAL TABLE experiences_fts USING fts5(
        title, content, examples, tokenize = 'porter unicode61 remove_diacritics 2')""",
    f"""CREATE TRIGGER experiences_fts_insert AFTER INSERT ON experiences BEGIN
        INSERT INTO experiences_fts(rowid, title, content, examples)
        VALUES (new.seq, new.title, new.content, {_EXAMPLES_TEXT.format(row="new")});
    END""",
    """CREATE TRIGGER experiences_fts_delete AFTER DELETE ON experiences BEGIN
        DELETE FROM experiences_fts WHERE rowid = old.seq;
    END""",
    f"""CREATE TRIGGER experiences_fts_update AFTER UPDATE OF title, content, examples ON experiences BEGIN
        UPDATE experiences_fts SET title = new.title, content = new.content,
            examples = {_EXAMPLES_TEXT.format(row="new")} WHERE rowid = new.seq;
    END""",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        action TEXT NOT NULL,
        experience_id TEXT,
        reason TEXT NOT NULL,
        run_id TEXT NOT NULL,
        problem_id TEXT,
        candidate TEXT,
        before TEXT,
        after TEXT,
        created_at REAL NOT NULL)""",
    "CREATE INDEX events_run ON events(run_id)",
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'running',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL)""",
    """CREATE TABLE run_problems (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        problem_id TEXT NOT NULL,
        status TEXT NOT NULL,
        trajectory TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (run_id, problem_id))""",
)


def _v0_to_v1(conn: sqlite3.Connection) -> None:
    # executescript would commit the migration's transaction half-way, so statements go one at a time.
    for statement in _SCHEMA_V1:
        conn.execute(statement)


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    # Quarantine: imported entries wait here until approved; retrieval reads only 'active' ones.
    conn.execute("ALTER TABLE experiences ADD COLUMN status TEXT NOT NULL DEFAULT 'active'")
    conn.execute("CREATE INDEX experiences_status ON experiences(status)")


def _v2_to_v3(conn: sqlite3.Connection) -> None:
    # The outcome queue: outcomes of a user's own agent waiting to be distilled and absorbed (`library.outcomes`).
    # `outcome` is the outcome itself as JSON; `result` what absorbing it did (actions, entries), once absorbed.
    conn.execute(
        """CREATE TABLE outcomes (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL DEFAULT 'queued',
            outcome TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            result TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            absorbed_at REAL)"""
    )
    conn.execute("CREATE INDEX outcomes_status ON outcomes(status, seq)")


# MIGRATIONS[n] takes a file from schema version n to n + 1 (version 0 is an empty file). A new version
# appends one function here; the opener applies the missing ones in order, in one transaction.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v0_to_v1, _v1_to_v2, _v2_to_v3]


def configure(conn: sqlite3.Connection) -> None:
    """Set up a fresh connection for sharing the file: busy timeout, foreign keys, WAL."""
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, and much faster


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Switching a file to WAL needs an exclusive lock, and SQLite does not wait for that one (the busy
    # timeout does not apply), so processes that create one library at the same moment retry here.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def stored_version(conn: sqlite3.Connection, path: str | Path) -> int:
    """The schema version the file is at: 0 for an empty file; LibraryError for a database that is not a
    library."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:
            raise LibraryError(f"{path} is an SQLite file but not a flexlearn library (no meta table)")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise LibraryError(f"{path} has no schema_version; it is not a flexlearn library")
    return int(row[0])


def check_readable(version: int, supported: int, path: str | Path) -> None:
    """Refuse a file written by a newer flexlearn, with a message that says what to do."""
    if version > supported:
        raise LibraryError(
            f"{path} has schema version {version}, but this flexlearn reads up to version "
            f"{supported}: upgrade flexlearn to open it"
        )


def upgrade(conn: sqlite3.Connection, version: int, target: int) -> None:
    """Apply the migrations from `version` to `target` and record the new version. The caller holds the
    write transaction, so an upgrade is all or nothing."""
    for step in MIGRATIONS[version:target]:
        step(conn)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(target),),
    )
