"""The experience library: one SQLite file holding the experiences, a full-text index over them, the
append-only log of every change, and the run records that let an interrupted run resume.

The file is safe to share between processes (WAL, a busy timeout, and `BEGIN IMMEDIATE` for every write);
one `Library` object belongs to one thread. `Library` is composed of one mixin per concern: `Experiences`
(experiences and their log), `Search` (BM25 over the FTS5 index), `Runs` (the learn-run ledger) and `Outcomes`
(the queue of outcomes waiting to be absorbed), all on `LibraryBase` (the connection and its transactions); the
schema and its migrations are in `schema`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Level, Status, Zone
from flexlearn.library import schema
from flexlearn.library.experiences import Experiences
from flexlearn.library.outcomes import Outcomes
from flexlearn.library.runs import Runs
from flexlearn.library.search import Search


def _unwritable(error: LibraryError) -> bool:
    """Whether opening failed because the file or its folder cannot be written (SQLite could not make its side
    files, or the file refuses writes), rather than because it is not a library."""
    text = str(error)
    return "unable to open database file" in text or "readonly database" in text or "read-only" in text


def _not_a_library(path: Path, error: sqlite3.DatabaseError) -> str:
    """Why an SQLite error at opening refuses the file: a damaged library (its pages malformed), or a file that is
    not a library at all."""
    if "malformed" in str(error):
        return f"the library file is damaged ({error}): {path}; restore it from a copy or an export"
    return f"{path} is not a flexlearn library (not an SQLite database: {error})"


class Library(Experiences, Search, Runs, Outcomes):
    """An experience library stored in one SQLite file. Open it with `Library.open(path)`."""

    SCHEMA_VERSION: ClassVar[int] = len(schema.MIGRATIONS)

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, read_only: bool = False) -> Library:
        """Open the library at `path`, creating the file unless `create=False` (its folder must exist), and bring
        an older schema up to date. `read_only=True` opens an existing library without writing anything, even
        where neither the file nor its folder can be written (see `open_read_only`).

        A file that is refused (not SQLite, another program's database, empty while `create=False`, of a newer
        schema) is left exactly as it was: nothing is written before it has been recognised as a library.
        """
        path = Path(path)
        if read_only:
            return cls.open_read_only(path)
        if not path.exists():
            if not create:
                raise LibraryError(f"no library at {path}")
            if not path.parent.is_dir():
                raise LibraryError(f"cannot create library {path}: folder {path.parent} does not exist")
        elif path.is_dir():
            raise LibraryError(f"{path} is a folder, not a library file")
        try:
            # flexlearn's synchronous API runs the loops on its own thread (flexlearn._sync) while the caller,
            # which opened the library, waits: one thread at a time, so sharing the connection is safe.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise LibraryError(f"cannot open library {path}: {e}") from e
        try:
            # Recognise the file before anything writes to it: switching to WAL rewrites the header of a foreign
            # SQLite file, and migrating writes the schema into whatever it was given.
            conn.execute(f"PRAGMA busy_timeout = {int(schema.BUSY_TIMEOUT_S * 1000)}")
            version = schema.stored_version(conn, path)
            if version == 0 and not create:
                raise LibraryError(f"{path} is empty, not a flexlearn library")
            schema.check_readable(version, cls.SCHEMA_VERSION, path)
            schema.configure(conn)
            lib = cls(conn, path)
            lib._migrate()
        except sqlite3.OperationalError as e:
            conn.close()
            raise LibraryError(f"cannot open library {path}: {e}") from e
        except sqlite3.DatabaseError as e:
            conn.close()
            raise LibraryError(_not_a_library(path, e)) from e
        except BaseException:
            conn.close()
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
            return cls.open_read_only(Path(path))

    @classmethod
    def open_read_only(cls, path: Path) -> Library:
        """Open an existing library without writing anything, not even the side files SQLite keeps beside a file
        in WAL mode: read-only where those can be made, else as immutable (a folder nobody can write in has no
        writer to race with). A library of an older schema is refused: upgrading it is a write."""
        if not path.exists():
            raise LibraryError(f"no library at {path}")
        if path.is_dir():
            raise LibraryError(f"{path} is a folder, not a library file")
        target = urllib.parse.quote(str(path.resolve()))
        error: sqlite3.Error | None = None
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            conn = sqlite3.connect(f"file:{target}?{flags}", uri=True, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(schema.BUSY_TIMEOUT_S * 1000)}")
                version = schema.stored_version(conn, path)
            except sqlite3.OperationalError as e:
                conn.close()
                error = e
                continue
            except sqlite3.DatabaseError as e:
                conn.close()
                raise LibraryError(_not_a_library(path, e)) from e
            except BaseException:
                conn.close()
                raise
            if version == 0:
                conn.close()
                raise LibraryError(f"{path} is empty, not a flexlearn library")
            try:
                schema.check_readable(version, cls.SCHEMA_VERSION, path)
                if version != cls.SCHEMA_VERSION:
                    raise LibraryError(
                        f"{path} is of an older library format (schema {version}) and cannot be upgraded where it "
                        "is read-only: open it once where it can be written"
                    )
            except BaseException:
                conn.close()
                raise
            lib = cls(conn, path)
            lib.read_only = True
            return lib
        raise LibraryError(f"cannot open library {path} read-only: {error}")

    def _migrate(self) -> None:
        version = schema.stored_version(self._conn, self.path)
        schema.check_readable(version, self.SCHEMA_VERSION, self.path)
        if version == self.SCHEMA_VERSION:
            return
        with self.transaction():
            # Another process may have migrated while we waited for the write lock.
            version = schema.stored_version(self._conn, self.path)
            schema.check_readable(version, self.SCHEMA_VERSION, self.path)
            schema.upgrade(self._conn, version, self.SCHEMA_VERSION)

    def close(self) -> None:
        """Close the file, complete in itself: what the write-ahead log holds is copied into it first, so the
        `.flexlib` alone can be copied or handed on once a command has finished. (SQLite does that by itself only
        when the last connection to the file closes, and the retrieval index keeps a read connection of its own.)
        Safe to call twice."""
        with contextlib.suppress(sqlite3.Error):  # closed already, or a read-only file: nothing to copy
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Library({str(self.path)!r})"

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
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(value)))
