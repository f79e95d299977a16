"""The experience library: the experiences, a full-text index over them, the append-only log of every change, the
run records that let an interrupted run resume, and the queue of outcomes waiting to be absorbed; in one SQLite file
(the embedded default) or in a PostgreSQL database (`postgresql://...`).

A file is safe to share between processes of one host (WAL, a busy timeout, and `BEGIN IMMEDIATE` for every
write); a PostgreSQL library between processes on any number of hosts (every write transaction holds the library's
advisory lock). One `Library` object belongs to one thread. `Library` is composed of one mixin per concern:
`Experiences` (experiences and their log), `Search` (lexical search over the library's own index), `Runs` (the
learn-run ledger) and `Outcomes` (the outcome queue), all on `LibraryBase` (the connection and its transactions).
What differs between a file and a server (connecting, locking, the tables and their migrations, search) is in
`flexlearn.library.backend`, behind one `Database` interface.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Level, Status, Zone
from flexlearn.library import backend, schema
from flexlearn.library.experiences import Experiences
from flexlearn.library.outcomes import Outcomes
from flexlearn.library.runs import Runs
from flexlearn.library.search import Search


def _unwritable(error: LibraryError) -> bool:
    """Whether opening failed because the file or its folder cannot be written (SQLite could not make its side
    files, or the file refuses writes), rather than because it is not a library."""
    text = str(error)
    return "unable to open database file" in text or "readonly database" in text or "read-only" in text


class Library(Experiences, Search, Runs, Outcomes):
    """An experience library, in an SQLite file or on a PostgreSQL server. Open it with `Library.open(path_or_url)`."""

    SCHEMA_VERSION: ClassVar[int] = len(schema.MIGRATIONS)
    # What `open` was given (a path, or a URL with its password): `reopen` connects to it again. Never shown.
    _target: str | Path

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, read_only: bool = False) -> Library:
        """Open the library at `path`: a file, or a PostgreSQL database named by a `postgresql://` (or
        `postgres://`) URL. A file is created unless `create=False` (its folder must exist); a database must
        exist, and an empty one becomes a library unless `create=False`. An older schema is brought up to date.
        `read_only=True` opens an existing library without writing anything, even where neither the file nor its
        folder can be written (see `open_read_only`).

        What is refused (not SQLite, another program's database, empty while `create=False`, of a newer schema) is
        left exactly as it was: nothing is written before it has been recognised as a library.
        """
        db = backend.connect(path, create=create, read_only=read_only)
        try:
            # Recognise the store before anything writes to it: switching a file to WAL rewrites the header of a
            # foreign SQLite file, and migrating writes the schema into whatever it was given.
            version = db.stored_version()
            if version == 0 and (read_only or not create):
                raise LibraryError(f"{db.location} is empty, not a flexlearn library")
            schema.check_readable(version, cls.SCHEMA_VERSION, db.location)
            if read_only and version != cls.SCHEMA_VERSION:
                raise LibraryError(
                    f"{db.location} is of an older library format (schema {version}) and cannot be upgraded where "
                    "it is read-only: open it once where it can be written"
                )
            if not read_only:
                db.prepare()
            lib = cls(db)
            lib._target = path
            if not read_only:
                lib._migrate()
                lib.index_texts()
        except BaseException as e:
            db.close()
            error = db.opening_error(e) if isinstance(e, Exception) else None
            if error is not None:
                raise error from e
            raise
        return lib

    @classmethod
    def open_for_reading(cls, path: str | Path) -> Library:
        """Open an existing library for a command that reads it (and would update usage counters if it could):
        as `open(path, create=False)` where the file and its folder can be written, else read-only."""
        try:
            return cls.open(path, create=False)
        except LibraryError as e:
            if not _unwritable(e):
                raise
            return cls.open_read_only(path)

    @classmethod
    def open_read_only(cls, path: str | Path) -> Library:
        """Open an existing library without writing anything. A file is opened without even the side files SQLite
        keeps beside it in WAL mode: read-only where those can be made, else as immutable (a folder nobody can write
        in has no writer to race with); a server's connection refuses every write. A library of an older schema is
        refused: upgrading it is a write."""
        return cls.open(path, read_only=True)

    def reopen(self, *, read_only: bool | None = None) -> Library:
        """Another connection to this library (the same file; the same database, with the same credentials), for a
        component that reads and writes at its own pace, outside this connection's transactions: the retrieval
        indexes. Read-only when this one is, unless `read_only` says otherwise."""
        read_only = self.read_only if read_only is None else read_only
        return type(self).open(self._target, create=False, read_only=read_only)

    def _migrate(self) -> None:
        version = self._conn.stored_version()
        schema.check_readable(version, self.SCHEMA_VERSION, self.location)
        if version == self.SCHEMA_VERSION:
            return
        with self.transaction():
            # Another process may have migrated while we waited for the write lock.
            version = self._conn.stored_version()
            schema.check_readable(version, self.SCHEMA_VERSION, self.location)
            self._conn.upgrade(version, self.SCHEMA_VERSION)

    def close(self) -> None:
        """Close the library, complete in itself: a file first copies what its write-ahead log holds into itself,
        so the `.flexlib` alone can be copied or handed on once a command has finished. Safe to call twice."""
        self._conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Library({self.location!r})"

    # -- summary ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts by zone, level, zone and level, and event action; every key is present even when 0. Read in
        one snapshot, so the counts agree with each other even while another process writes."""
        with self.snapshot():
            return self._stats()

    def _stats(self) -> dict[str, Any]:
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
            "quarantined": self._conn.execute(
                "SELECT count(*) FROM experiences WHERE status = ?", (str(Status.QUARANTINED),)
            ).fetchone()[0],
            "schema_version": self.SCHEMA_VERSION,
        }

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
            self._conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
            )
