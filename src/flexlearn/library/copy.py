"""Copying a whole library into an empty one, on either backend (`flex library copy SRC DST`): a file to a
PostgreSQL database, a database to a file, a file to a file.

The copy is lossless: every row of every table (the entries with their `seq`, counters and timestamps, the event
log with its `seq`s, the runs and where each stood on every problem, in the order recorded, the outcome queue, and
the free-form settings) arrives as it was, so a copy there and back is identical field by field. What each backend
derives from the rows (the search index, the next key) is rebuilt by the destination. The source is read in one
snapshot, and the destination written in one transaction: a copy that fails leaves the destination empty.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flexlearn.errors import LibraryError
from flexlearn.library.rows import ENTRY_COLUMNS
from flexlearn.library.store import Library

# Rows read and written at a time: a big library streams through, never wholly in memory.
CHUNK = 1000

# Each copied table: its columns (the same on both backends) and the key it is read in order of (`rowid`: the order
# rows were first written, SQLite's implicit column and an explicit one on PostgreSQL). Parents come before the
# tables that refer to them; an entry's parent is linked once all entries are in.
TABLES: dict[str, tuple[str, str]] = {
    "experiences": (ENTRY_COLUMNS, "seq"),
    "events": ("seq, action, experience_id, reason, run_id, problem_id, candidate, before, after, created_at", "seq"),
    "runs": ("run_id, kind, config, status, created_at, updated_at", "rowid"),
    "run_problems": ("run_id, problem_id, status, trajectory, updated_at", "rowid"),
    "outcomes": ("seq, id, status, outcome, attempts, error, result, created_at, updated_at, absorbed_at", "seq"),
}


def _names(columns: str) -> list[str]:
    return [c.strip() for c in columns.split(",")]


@dataclass
class Copied:
    """How many rows of each table a copy wrote (`meta`: the settings besides the schema version)."""

    experiences: int = 0
    events: int = 0
    runs: int = 0
    run_problems: int = 0
    outcomes: int = 0
    meta: int = 0


def _read(library: Library, table: str) -> Iterator[tuple[Any, ...]]:
    """Every row of `table` in key order, `CHUNK` rows per query (keyset pages: each query starts after the last
    key read). Call inside one snapshot."""
    columns, key = TABLES[table]
    last: Any = None
    while True:
        where = "" if last is None else f" WHERE {key} > ?"
        rows = library._conn.execute(
            f"SELECT {key}, {columns} FROM {table}{where} ORDER BY {key} LIMIT {CHUNK}",
            () if last is None else (last,),
        ).fetchall()
        for row in rows:
            yield tuple(row)[1:]
        if len(rows) < CHUNK:
            return
        last = rows[-1][0]


def _write(library: Library, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    columns, _ = TABLES[table]
    marks = ", ".join("?" * len(_names(columns)))
    library._conn.executemany(f"INSERT INTO {table}({columns}) VALUES ({marks})", rows)


def _is_empty(library: Library) -> bool:
    held = library._conn.execute(
        "SELECT (SELECT count(*) FROM experiences) + (SELECT count(*) FROM events) + (SELECT count(*) FROM runs)"
        " + (SELECT count(*) FROM outcomes) + (SELECT count(*) FROM meta WHERE key != 'schema_version')"
    ).fetchone()[0]
    return held == 0


def copy_library(source: Library, dest: Library) -> Copied:
    """Copy everything `source` holds into the empty library `dest` (see the module docstring). LibraryError when
    `dest` is not empty, is `source` itself, or cannot be written."""
    if dest.read_only:
        raise LibraryError(f"{dest.location} is open read-only: it cannot take a copy")
    if source.location == dest.location or (
        source.path is not None and dest.path is not None and source.path.resolve() == dest.path.resolve()
    ):
        raise LibraryError(f"cannot copy {source.location} onto itself")
    copied = Copied()
    parents: list[tuple[str, str]] = []
    written: set[str] = set()  # the entries inserted so far (a chunk's rows go in in order)
    parent_at = _names(ENTRY_COLUMNS).index("parent_id")
    id_at = _names(ENTRY_COLUMNS).index("id")
    with source.snapshot(), dest.transaction():
        if not _is_empty(dest):
            raise LibraryError(f"{dest.location} is not empty: a copy goes into a new, empty library")
        for table in TABLES:
            chunk: list[tuple[Any, ...]] = []
            for row in _read(source, table):
                if table == "experiences":
                    if row[parent_at] is not None and row[parent_at] not in written:
                        # Linked once every entry is in: this parent comes after its child in `seq` order. (Most
                        # parents come first and go in with the row: a pass rewriting every linked row cost a
                        # server a quarter of a copy's time.)
                        parents.append((row[parent_at], row[id_at]))
                        row = (*row[:parent_at], None, *row[parent_at + 1 :])
                    written.add(row[id_at])
                chunk.append(row)
                if len(chunk) >= CHUNK:
                    _write(dest, table, chunk)
                    chunk.clear()
                setattr(copied, table, getattr(copied, table) + 1)
            if chunk:
                _write(dest, table, chunk)
            if table == "experiences" and parents:
                dest._conn.executemany("UPDATE experiences SET parent_id = ? WHERE id = ?", parents)
        settings = source._conn.execute(
            "SELECT key, value FROM meta WHERE key != 'schema_version' ORDER BY key"
        ).fetchall()
        dest._conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [tuple(r) for r in settings])
        copied.meta = len(settings)
        dest._conn.restart_sequences()
    dest.checkpoint()
    return copied
