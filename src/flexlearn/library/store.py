"""The experience library: one SQLite file holding the experiences, a full-text index over them, the
append-only log of every change, and the run records that let an interrupted run resume.

The file is safe to share between processes (WAL, a busy timeout, and `BEGIN IMMEDIATE` for every write);
one `Library` object belongs to one thread.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Event, Experience, Level, Provenance, Zone

MAX_EXAMPLES = 5
BUSY_TIMEOUT_S = 30.0
MAX_QUERY_TOKENS = 64

# Lower is more general; a parent must be strictly more general than its child, which also rules out cycles.
_LEVEL_RANK = {Level.PRINCIPLE: 0, Level.PATTERN: 1, Level.CASE: 2}
_EDITABLE = frozenset({"title", "content", "examples", "zone", "level", "parent_id"})

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


# _MIGRATIONS[n] takes a file from schema version n to n + 1 (version 0 is an empty file). A new version
# appends one function here; the opener applies the missing ones in order, in one transaction.
_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v0_to_v1]

# Bare words to leave out of a search: they match nearly every lesson and only dilute BM25.
_STOP_WORDS_TEXT = """a an and are as at be but by can do does for from has have how if in into is it its not no of
    on or so such that the then there these this to was we were what when where which while who will with you
    your our us let use using than thus also all any each may must should would could"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
# Runs of letters and digits: the same split unicode61 makes, so every token we quote is one FTS token.
_TOKEN = re.compile(r"[^\W_]+")


def fts_query(text: str) -> str:
    """Turn any text into a safe FTS5 query: an OR of quoted tokens, or "" when nothing is worth searching.

    Quoting every token means no input (quotes, `NEAR`, `*`, LaTeX, SMILES) can be read as FTS syntax.
    When there are too many tokens the longer ones are kept, longer words being the rarer and more telling.
    """
    tokens = [t for t in dict.fromkeys(_TOKEN.findall(text.lower())) if len(t) > 1 and t not in _STOP_WORDS]
    if len(tokens) > MAX_QUERY_TOKENS:
        tokens = sorted(tokens, key=len, reverse=True)[:MAX_QUERY_TOKENS]
    return " OR ".join(f'"{t}"' for t in tokens)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _to_experience(row: sqlite3.Row) -> Experience:
    prov = json.loads(row["provenance"])
    return Experience(
        zone=Zone(row["zone"]),
        level=Level(row["level"]),
        title=row["title"],
        content=row["content"],
        examples=json.loads(row["examples"]),
        provenance=Provenance(**prov),
        parent_id=row["parent_id"],
        id=row["id"],
        retrieved=row["retrieved"],
        helped=row["helped"],
        hurt=row["hurt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _filters(zone: Zone | str | None, level: Level | str | None, prefix: str = "") -> tuple[str, list[str]]:
    """SQL conditions (each starting with AND) and their parameters for the optional zone/level filters."""
    sql, params = "", []
    if zone is not None:
        sql += f" AND {prefix}zone = ?"
        params.append(str(Zone(zone)))
    if level is not None:
        sql += f" AND {prefix}level = ?"
        params.append(str(Level(level)))
    return sql, params


def _check_link(parent_id: str, parent_level: Level, child_id: str, child_level: Level) -> None:
    if _LEVEL_RANK[Level(parent_level)] >= _LEVEL_RANK[Level(child_level)]:
        raise LibraryError(
            f"a {parent_level} ({parent_id!r}) cannot be the parent of a {child_level} ({child_id or 'new'!r}):"
            " a parent must be more general than its child"
        )


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


class Library:
    """An experience library stored in one SQLite file. Open it with `Library.open(path)`."""

    SCHEMA_VERSION: ClassVar[int] = len(_MIGRATIONS)

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self.path = path
        self._depth = 0  # how many transaction() blocks are open; >0 means inside BEGIN IMMEDIATE

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Library:
        """Open the library at `path`, creating it (and its folder) unless `create=False`, and bring an older
        schema up to date."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise LibraryError(f"no library at {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise LibraryError(f"cannot open library {path}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, and much faster
            lib = cls(conn, path)
            lib._migrate()
        except sqlite3.OperationalError as e:
            conn.close()
            raise LibraryError(f"cannot open library {path}: {e}") from e
        except sqlite3.DatabaseError as e:
            conn.close()
            raise LibraryError(f"{path} is not a flexlearn library (not an SQLite database: {e})") from e
        except BaseException:
            conn.close()
            raise
        return lib

    def _schema_version(self) -> int:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables:
                raise LibraryError(f"{self.path} is an SQLite file but not a flexlearn library (no meta table)")
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise LibraryError(f"{self.path} has no schema_version; it is not a flexlearn library")
        return int(row[0])

    def _check_version(self, version: int) -> None:
        if version > self.SCHEMA_VERSION:
            raise LibraryError(
                f"{self.path} has schema version {version}, but this flexlearn reads up to version "
                f"{self.SCHEMA_VERSION}: upgrade flexlearn to open it"
            )

    def _migrate(self) -> None:
        version = self._schema_version()
        self._check_version(version)
        if version == self.SCHEMA_VERSION:
            return
        with self.transaction():
            # Another process may have migrated while we waited for the write lock.
            version = self._schema_version()
            self._check_version(version)
            for step in _MIGRATIONS[version : self.SCHEMA_VERSION]:
                step(self._conn)
            self._conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(self.SCHEMA_VERSION),)
            )

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        self._conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Library({str(self.path)!r})"

    # -- transactions -------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically: commit at the end, roll back if the block raises.

        The outermost block takes the write lock at once (`BEGIN IMMEDIATE`), so a concurrent writer waits
        for it instead of failing half-way. A nested block joins the outer one through a savepoint: if it
        raises, only its own writes are undone, and the outer block decides about the rest.
        """
        if self._depth:
            name = f"sp{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                raise
            finally:
                self._depth -= 1
                self._conn.execute(f"RELEASE {name}")
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise LibraryError(f"cannot write to {self.path}: {e}") from e
        self._depth = 1
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            # SQLite ends the transaction itself after some errors (disk full...); a failed COMMIT does not.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    # -- reads --------------------------------------------------------------------------------------------

    def find(self, id: str) -> Experience | None:
        """The experience with this id, or None."""
        row = self._conn.execute("SELECT * FROM experiences WHERE id = ?", (id,)).fetchone()
        return None if row is None else _to_experience(row)

    def get(self, id: str) -> Experience:
        """The experience with this id; LibraryError if there is none."""
        exp = self.find(id)
        if exp is None:
            raise LibraryError(f"no experience with id {id!r} in {self.path}")
        return exp

    def list(self, *, zone: Zone | str | None = None, level: Level | str | None = None) -> builtins.list[Experience]:
        """All experiences, optionally of one zone and/or level, in insertion order."""
        where, params = _filters(zone, level)
        rows = self._conn.execute(f"SELECT * FROM experiences WHERE 1{where} ORDER BY seq", params)
        return [_to_experience(r) for r in rows]

    def count(self, *, zone: Zone | str | None = None, level: Level | str | None = None) -> int:
        """How many experiences there are, optionally of one zone and/or level."""
        where, params = _filters(zone, level)
        return self._conn.execute(f"SELECT count(*) FROM experiences WHERE 1{where}", params).fetchone()[0]

    def children(self, id: str) -> builtins.list[Experience]:
        """The experiences whose parent is `id`, in insertion order."""
        rows = self._conn.execute("SELECT * FROM experiences WHERE parent_id = ? ORDER BY seq", (id,))
        return [_to_experience(r) for r in rows]

    def stats(self) -> dict[str, Any]:
        """Counts by zone, level, zone and level, and event action; every key is present even when 0."""
        by_zone_level = {str(z): {str(lv): 0 for lv in Level} for z in Zone}
        for zone, level, n in self._conn.execute("SELECT zone, level, count(*) FROM experiences GROUP BY 1, 2"):
            by_zone_level.setdefault(zone, {})[level] = n
        events = {str(a): 0 for a in Action}
        events.update(self._conn.execute("SELECT action, count(*) FROM events GROUP BY 1").fetchall())
        return {
            "total": sum(n for levels in by_zone_level.values() for n in levels.values()),
            "by_zone": {z: sum(levels.values()) for z, levels in by_zone_level.items()},
            "by_level": {str(lv): sum(levels.get(str(lv), 0) for levels in by_zone_level.values()) for lv in Level},
            "by_zone_level": by_zone_level,
            "events": events,
            "schema_version": self.SCHEMA_VERSION,
        }

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> builtins.list[tuple[Experience, float]]:
        """The `k` experiences that best match `query` (BM25 over title, content and examples), best first,
        each with its score (higher is better). Any text is a valid query; one with no searchable word gives []."""
        match = fts_query(query)
        if not match or k <= 0:
            return []
        where, params = _filters(zone, level, prefix="e.")
        # Title words weigh most (a title is the lesson in brief); examples least (they quote raw attempts).
        rows = self._conn.execute(
            "SELECT e.*, -bm25(experiences_fts, 2.0, 1.0, 0.5) AS score"
            " FROM experiences_fts JOIN experiences e ON e.seq = experiences_fts.rowid"
            f" WHERE experiences_fts MATCH ?{where} ORDER BY score DESC, e.seq LIMIT ?",
            [match, *params, k],
        )
        return [(_to_experience(r), r["score"]) for r in rows]

    def nearest(self, exp: Experience, k: int = 5) -> builtins.list[Experience]:
        """The `k` stored experiences most like `exp` (any zone or level), not counting `exp` itself.
        This is what the updater compares a candidate with; it reads only those `k` rows."""
        text = "\n".join([exp.title, exp.content, *exp.examples])
        hits = self.search(text, k=k + 1)
        return [e for e, _ in hits if not exp.id or e.id != exp.id][:k]

    def events(self, *, run_id: str | None = None, since_seq: int = 0) -> builtins.list[Event]:
        """The log, in order: events after `since_seq`, optionally of one run."""
        sql, params = "SELECT * FROM events WHERE seq > ?", [since_seq]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        return [
            Event(
                seq=r["seq"],
                action=Action(r["action"]),
                experience_id=r["experience_id"],
                reason=r["reason"],
                run_id=r["run_id"],
                problem_id=r["problem_id"],
                candidate=_loads(r["candidate"]),
                before=_loads(r["before"]),
                after=_loads(r["after"]),
                created_at=r["created_at"],
            )
            for r in self._conn.execute(sql + " ORDER BY seq", params)
        ]

    # -- writes -------------------------------------------------------------------------------------------

    def _log(
        self,
        action: Action,
        experience_id: str | None,
        *,
        reason: str,
        run_id: str,
        problem_id: str | None,
        candidate: Experience | None = None,
        before: Experience | None = None,
        after: Experience | None = None,
    ) -> None:
        self._conn.execute(
            "INSERT INTO events(action, experience_id, reason, run_id, problem_id, candidate, before, after,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(action),
                experience_id,
                reason,
                run_id,
                problem_id,
                *(None if e is None else _dumps(e.to_dict()) for e in (candidate, before, after)),
                time.time(),
            ),
        )

    def _check_parent(self, id: str, level: Level, parent_id: str | None) -> None:
        if parent_id is None:
            return
        parent = self.find(parent_id)
        if parent is None:
            raise LibraryError(f"parent {parent_id!r} of {id or 'new experience'!r} is not in the library")
        _check_link(parent_id, parent.level, id, level)

    def _free_id(self, base: str) -> str:
        id, n = base, 1
        while self.find(id) is not None:
            n += 1
            id = f"{base}-{n}"
        return id

    def add(
        self,
        exp: Experience,
        *,
        reason: str,
        run_id: str = "",
        problem_id: str | None = None,
        action: Action = Action.ADD,
    ) -> Experience:
        """Store a new experience and log it. Returns the stored copy, and sets `exp.id` to its id.

        Without an id, the experience gets `exp.content_id()`, suffixed `-2`, `-3`... if that is taken (even
        by an identical entry: callers that want to skip duplicates check `find` first). An explicit id that
        is taken is an error. Examples beyond `MAX_EXAMPLES` are dropped. The parent, if any, must exist and
        be more general.
        """
        with self.transaction():
            if exp.id and self.find(exp.id) is not None:
                raise LibraryError(f"an experience with id {exp.id!r} already exists in {self.path}")
            id = exp.id or self._free_id(exp.content_id())
            self._check_parent(id, exp.level, exp.parent_id)
            self._conn.execute(
                "INSERT INTO experiences(id, zone, level, title, content, examples, provenance, parent_id,"
                " retrieved, helped, hurt, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    id,
                    str(Zone(exp.zone)),
                    str(Level(exp.level)),
                    exp.title,
                    exp.content,
                    _dumps([str(x) for x in exp.examples[:MAX_EXAMPLES]]),
                    _dumps(exp.to_dict()["provenance"]),
                    exp.parent_id,
                    exp.retrieved,
                    exp.helped,
                    exp.hurt,
                    exp.created_at,
                    exp.updated_at,
                ),
            )
            stored = self.get(id)
            self._log(action, id, reason=reason, run_id=run_id, problem_id=problem_id, candidate=stored, after=stored)
        exp.id = id
        return stored

    def merge(
        self,
        target_id: str,
        *,
        content: str,
        examples: Sequence[str] | None,
        candidate: Experience,
        reason: str,
        run_id: str = "",
        problem_id: str | None = None,
    ) -> Experience:
        """Fold `candidate` into an existing experience: its content becomes `content`; its examples become
        `examples` if given, else its own followed by the candidate's (no repeats); either way at most
        `MAX_EXAMPLES`. The candidate's problem ids join the target's provenance. Returns the merged entry."""
        with self.transaction():
            before = self.get(target_id)
            new_examples = list(examples) if examples is not None else [*before.examples, *candidate.examples]
            problem_ids = [*before.provenance.problem_ids, *candidate.provenance.problem_ids]
            provenance = replace(before.provenance, problem_ids=list(dict.fromkeys(problem_ids)))
            self._conn.execute(
                "UPDATE experiences SET content = ?, examples = ?, provenance = ?, updated_at = ? WHERE id = ?",
                (
                    content,
                    _dumps(list(dict.fromkeys(new_examples))[:MAX_EXAMPLES]),
                    _dumps(replace(before, provenance=provenance).to_dict()["provenance"]),
                    time.time(),
                    target_id,
                ),
            )
            after = self.get(target_id)
            self._log(
                Action.MERGE,
                target_id,
                reason=reason,
                run_id=run_id,
                problem_id=problem_id,
                candidate=candidate,
                before=before,
                after=after,
            )
        return after

    def discard(self, candidate: Experience, *, reason: str, run_id: str = "", problem_id: str | None = None) -> None:
        """Log that a candidate was judged not worth keeping. The library itself does not change."""
        with self.transaction():
            self._log(
                Action.DISCARD,
                candidate.id or None,
                reason=reason,
                run_id=run_id,
                problem_id=problem_id,
                candidate=candidate,
            )

    def edit(self, id: str, /, *, reason: str, **fields: Any) -> Experience:
        """Change some of title, content, examples, zone, level, parent_id; log it; return the result.
        The id stays the same: it names the entry, it is not recomputed from the new text."""
        unknown = set(fields) - _EDITABLE
        if unknown or not fields:
            raise LibraryError(f"edit takes some of {sorted(_EDITABLE)}, not {sorted(unknown) or 'nothing'}")
        with self.transaction():
            before = self.get(id)
            try:
                after = replace(before, **fields, updated_at=time.time())
                after.zone, after.level = Zone(after.zone), Level(after.level)
            except ValueError as e:
                raise LibraryError(f"cannot edit {id!r}: {e}") from e
            self._check_parent(id, after.level, after.parent_id)
            for child in self.children(id):
                _check_link(id, after.level, child.id, child.level)
            self._conn.execute(
                "UPDATE experiences SET title = ?, content = ?, examples = ?, zone = ?, level = ?, parent_id = ?,"
                " updated_at = ? WHERE id = ?",
                (
                    after.title,
                    after.content,
                    _dumps([str(x) for x in after.examples[:MAX_EXAMPLES]]),
                    str(after.zone),
                    str(after.level),
                    after.parent_id,
                    after.updated_at,
                    id,
                ),
            )
            after = self.get(id)
            self._log(Action.EDIT, id, reason=reason, run_id="", problem_id=None, before=before, after=after)
        return after

    def set_parent(self, id: str, parent_id: str | None) -> Experience:
        """Attach `id` under `parent_id` (or detach it with None). Logged as an edit."""
        return self.edit(id, reason=f"set parent to {parent_id}", parent_id=parent_id)

    def delete(self, id: str, *, reason: str) -> None:
        """Remove an experience and log it; its children lose their parent (they are not deleted)."""
        with self.transaction():
            before = self.get(id)
            self._conn.execute("DELETE FROM experiences WHERE id = ?", (id,))
            self._log(Action.DELETE, id, reason=reason, run_id="", problem_id=None, before=before)

    def record_retrieval(self, ids: Iterable[str]) -> None:
        """Count one retrieval per id given, so an id listed twice (shown for two problems) counts twice.
        Unknown ids are ignored: they may have been deleted since."""
        self._bump("retrieved", ids)

    def record_outcome(self, ids: Iterable[str], helped: bool) -> None:
        """Count, per id given, whether the experiences shown for a problem helped (the answer was right)
        or hurt."""
        self._bump("helped" if helped else "hurt", ids)

    def _bump(self, column: str, ids: Iterable[str]) -> None:
        with self.transaction():
            self._conn.executemany(
                f"UPDATE experiences SET {column} = {column} + ? WHERE id = ?",
                [(n, i) for i, n in Counter(ids).items()],
            )

    # -- runs ---------------------------------------------------------------------------------------------

    def begin_run(self, run_id: str, *, kind: str, config: dict[str, Any]) -> None:
        """Record a run, or, when it exists already (a resume), just touch its updated_at."""
        now = time.time()
        with self.transaction():
            self._conn.execute(
                "INSERT INTO runs(run_id, kind, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET updated_at = excluded.updated_at",
                (run_id, kind, _dumps(config), now, now),
            )

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        """The config the run began with, or None for an unknown run."""
        row = self._conn.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def latest_run(self, kind: str) -> str | None:
        """The most recently begun run of this kind, or None."""
        row = self._conn.execute(
            "SELECT run_id FROM runs WHERE kind = ? ORDER BY created_at DESC, rowid DESC LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else row[0]

    def finish_run(self, run_id: str, status: str = "done") -> None:
        """Set a run's final status."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?", (status, time.time(), run_id)
            )
            if cur.rowcount == 0:
                raise LibraryError(f"no run {run_id!r} in {self.path}")

    def run_status(self, run_id: str) -> str | None:
        """'running' until finish_run sets another status; None for an unknown run."""
        row = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def record_problem(self, run_id: str, problem_id: str, *, status: str, trajectory: dict[str, Any]) -> None:
        """Save (or replace) where a run stands on one problem, so a resumed run can skip or continue it."""
        with self.transaction():
            if self.run_status(run_id) is None:
                raise LibraryError(f"no run {run_id!r} in {self.path}: call begin_run first")
            self._conn.execute(
                "INSERT INTO run_problems(run_id, problem_id, status, trajectory, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id, problem_id) DO UPDATE SET status = excluded.status,"
                " trajectory = excluded.trajectory, updated_at = excluded.updated_at",
                (run_id, problem_id, status, _dumps(trajectory), time.time()),
            )

    def problem_status(self, run_id: str) -> dict[str, str]:
        """Each recorded problem of the run and its status, in the order first recorded."""
        rows = self._conn.execute(
            "SELECT problem_id, status FROM run_problems WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        return dict(rows.fetchall())

    def trajectory(self, run_id: str, problem_id: str) -> dict[str, Any] | None:
        """The trajectory last recorded for this problem in this run, or None."""
        row = self._conn.execute(
            "SELECT trajectory FROM run_problems WHERE run_id = ? AND problem_id = ?", (run_id, problem_id)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    # -- meta ---------------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A free-form setting stored with the library, or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Store a free-form setting. `schema_version` is the library's own and cannot be set."""
        if key == "schema_version":
            raise LibraryError("schema_version is managed by the library")
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(value)))
