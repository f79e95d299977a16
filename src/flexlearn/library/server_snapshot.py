"""A read-only view of one library on a PostgreSQL server, for what is derived from it and kept on each host that
uses it (the tantivy index, in a per-user cache folder: `flexlearn.retrieval.index_home`): the reads of
`snapshot.SnapshotReader`, the same row shapes, on a read-only connection of its own (`reader.LibraryReader`), and
`ServerSource`, which opens such readers as the library was opened (`reader.LibrarySource`).

`snapshot()` is a REPEATABLE READ, READ ONLY transaction, so the rows read and the revision recorded with them are of
one moment. The revision is the log's last `seq`, as in a file: writers take turns under the library's advisory
lock (`backend.postgres`) and a transaction becomes visible before it releases the lock, so the events' `seq`s are
committed in order and a reader that saw one has seen every smaller one.

A library is pinned to its instance, the OIDs of its database and of its `events` table: a library dropped and made
again at the same URL has new ones, and a reader of the old one says so (`LibraryReplacedError`) instead of reading
the new tables as if they were the old library's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flexlearn.errors import LibraryError
from flexlearn.experience import Status
from flexlearn.library import schema
from flexlearn.library.backend.postgres import PostgresDatabase, redact
from flexlearn.library.reader import INDEX_ROW_COLUMNS, IndexRow, LibraryReplacedError
from flexlearn.library.snapshot import LogReads

if TYPE_CHECKING:
    from flexlearn.library.base import LibraryBase

_COLUMNS = INDEX_ROW_COLUMNS
# Only what retrieval may show: quarantined entries join when approved (a logged change).
_ACTIVE = str(Status.ACTIVE)
# Ids per `= ANY(?)` when reading rows by id.
_BATCH = 1000
# Rows per round trip when reading the whole library through a server-side cursor (never all of it in memory).
_FETCH = 2000
# The library's instance: its database's OID and its `events` table's (NULL where there is none). `to_regclass`
# runs at execution and never fails, so this is safe inside a caller's transaction.
_INSTANCE = "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), to_regclass('events')::oid"

Instance = tuple[int | None, int | None]


def instance_of(db: Any) -> Instance:
    """The instance (`Instance`) of the library `db` (a `backend.Database` on a server) is connected to."""
    row = db.execute(_INSTANCE).fetchone()
    return (row[0], row[1])


class ServerSnapshotReader(LogReads):
    """A read-only connection to the library at `url` (`default_transaction_read_only`; it never writes), usable
    from any thread, one at a time; see `reader.LibraryReader`. `instance`: the library's instance as the caller
    knows it; LibraryReplacedError when the library found there is another."""

    def __init__(self, url: str, *, instance: Instance | None = None) -> None:
        self._db = PostgresDatabase.connect(url, read_only=True)
        self.location = self._db.location
        self._identity: str | None = None
        try:
            version = self._db.stored_version()
            if version == 0:
                raise LibraryError(f"{self.location} is empty, not a flexlearn library")
            schema.check_readable(version, len(schema.MIGRATIONS), self.location)
            self.instance = instance_of(self._db)
            if instance is not None and self.instance != instance:
                raise LibraryReplacedError(f"the library {self.location} was dropped and made again")
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def of(cls, library: LibraryBase) -> ServerSnapshotReader:
        """A reader of the library on a server that `library` is open on, with a connection of its own."""
        return ServerSource.of(library).reader()

    def identity(self) -> str:
        """What names the library wherever it is reached from, for the name of a folder derived from it: the
        server's system identifier (else the address and port it answers on), the database and the schema. Never
        the password."""
        if self._identity is None:
            self._identity = self._read_identity()
        return self._identity

    def _read_identity(self) -> str:
        import psycopg

        db = self._db
        try:
            server = f"system {db.execute('SELECT system_identifier FROM pg_control_system()').fetchone()[0]}"
        except psycopg.Error:  # not permitted to this role: the address it answers on instead
            host, port = db.execute("SELECT host(inet_server_addr()), inet_server_port()").fetchone()
            info = db.conn.info
            server = f"host {host or info.host} port {port or info.port}"
        database, schema_name = db.execute("SELECT current_database(), current_schema()").fetchone()
        return f"postgresql {server} database {database} schema {schema_name}"

    # -- the read transaction -----------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read in the block sees one moment of the library (a REPEATABLE READ, READ ONLY transaction). A
        block inside another joins it."""
        if self._db.in_transaction:
            yield
            return
        self._db.begin(write=False)
        try:
            yield
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    # -- the log ------------------------------------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        return self._db.execute(sql, params)

    def revision(self) -> int:
        """The library's revision: the last event's `seq`, 0 for a library never changed. LibraryReplacedError
        when the library was dropped and made again since this reader was opened."""
        revision, events = self._db.execute(
            "SELECT coalesce(max(seq), 0), to_regclass('events')::oid FROM events"
        ).fetchone()
        if events != self.instance[1]:
            raise LibraryReplacedError(f"the library {self.location} was dropped and made again")
        return int(revision)

    # -- the entries --------------------------------------------------------------------------------------

    def active_rows(self, ids: Sequence[str] | None = None) -> Iterator[IndexRow]:
        """The active entries (`IndexRow`s), all of them (through a server-side cursor, `_FETCH` rows a round
        trip, inside a read transaction of its own unless in a `snapshot()`) or those of `ids`."""
        if ids is None:
            yield from self._all_rows()
            return
        for start in range(0, len(ids), _BATCH):
            batch = list(ids[start : start + _BATCH])
            for row in self._db.execute(
                f"SELECT {_COLUMNS} FROM experiences WHERE status = ? AND id = ANY(?)", (_ACTIVE, batch)
            ):
                yield tuple(row)  # type: ignore[misc]

    def _all_rows(self) -> Iterator[IndexRow]:
        from psycopg.rows import tuple_row

        db = self._db
        with (
            self.snapshot(),
            db._connection_kept(),
            db.conn.cursor(name="flexlearn_index_rows", row_factory=tuple_row) as cursor,
        ):
            cursor.itersize = _FETCH
            cursor.execute(f"SELECT {_COLUMNS} FROM experiences WHERE status = %s", (_ACTIVE,))
            yield from cursor

    # -- closing ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. Safe to call twice."""
        self._db.close()

    def __enter__(self) -> ServerSnapshotReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ServerSource:
    """The library on a server at `url` as a `reader.LibrarySource`, pinned to its `instance`: each `reader()` is
    a `ServerSnapshotReader` of that library, LibraryReplacedError once it has been dropped and made again. The
    URL, with its password, is kept to connect and never shown (`location` is without it)."""

    def __init__(self, url: str, instance: Instance) -> None:
        self.path: Path | None = None  # no file: its derived index lives in a cache folder (`retrieval.index_home`)
        self._url = url
        self.location = redact(url)
        self.instance = instance

    @classmethod
    def of(cls, library: LibraryBase) -> ServerSource:
        """The source of the library on a server that `library` is open on: the URL it was opened with, and its
        instance as `library`'s connection sees it now (one query; nothing is written)."""
        target = getattr(library, "_target", None)
        if library.path is not None or target is None:
            raise LibraryError(f"{library.location} is not a library on a server")
        return cls(str(target), instance_of(library._conn))

    @property
    def key(self) -> tuple[object, ...]:
        """What tells this library apart from every other in this process: where it is (without the password) and
        its instance."""
        return ("server", self.location, *self.instance)

    def reader(self) -> ServerSnapshotReader:
        return ServerSnapshotReader(self._url, instance=self.instance)
