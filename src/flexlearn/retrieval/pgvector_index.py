"""The vector index of a library on a PostgreSQL server: the embeddings of its active entries kept in its own
database with pgvector (`library.backend.pgvector.PgVectorStore`), shared by every process on every host that
uses the library, and searched there.

It keeps them current as the file's index does (`dense.VectorIndex`): before each search it reads the library's
revision (one query) and, when it moved since this process last looked, syncs: in one transaction holding the
index's own advisory lock, it reads the revision the rows reflect (`experience_vector_state`) and re-embeds the
entries changed since (`Library.events(since_seq=...)`: each changed id's row is replaced by the entry as it now
stands, or removed when it is gone or not active), or, where there are no usable rows (none yet, of another
dimension, ahead of the library, or from a library made again in the same schema), embeds every active entry. Rows
and state commit together, so processes syncing at once take turns and the second finds the work done: no row is
lost or doubled (the rows' key is (model, id) besides). The library's writers never wait for this lock.

The index reads and writes on a connection of its own (`Library.reopen`), never inside a caller's transaction, so
a search answers for the library as committed. Where the library is open read-only the index writes nothing: it
searches the rows as the last writer left them (entries changed since are resolved through the library, so a
deleted or quarantined one is never shown) and says once that they lag; the same when the server refuses a write.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from flexlearn.experience import Event, Level, Status, Zone
from flexlearn.library.backend.pgvector import PgVectorStore, VectorState, VectorWriteRefused
from flexlearn.library.store import Library
from flexlearn.retrieval.dense import DenseUnavailableError, entry_text
from flexlearn.retrieval.embedder import Embedder

log = logging.getLogger(__name__)


class ServerVectorIndex:
    """The pgvector index of one server library for one embedding model (see the module). Thread-safe: one lock
    serialises its connection's use."""

    def __init__(self, library: Library, embedder: Embedder) -> None:
        self.location = library.location
        self.embedder = embedder
        self.model = embedder.model_id
        self._lib = library.reopen()
        self.writable = not self._lib.read_only
        store = self._lib.vector_store()
        assert store is not None, "a server library keeps its embeddings"
        self._store: PgVectorStore = store
        try:
            reason = store.open(embedder.dim, create=self.writable)
        except BaseException:
            self._lib.close()
            raise
        if reason is not None:
            self._lib.close()
            raise DenseUnavailableError(f"dense retrieval is unavailable for {self.location}: {reason}")
        self._lock = threading.RLock()
        self.revision = -1  # the library revision this process last saw the rows reflect; -1 before the first sync
        self.rebuilt = False  # whether the last sync embedded every entry (tests, benchmarks)
        self._lag_said = False

    def close(self) -> None:
        """Close the index's connection. The rows stay in the database for every process."""
        self._lib.close()

    def __len__(self) -> int:
        with self._lock:
            return self._store.count(self.model)

    # -- keeping current ----------------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the rows to the library's committed revision: nothing to do when it has not moved (one read)."""
        with self._lock:
            current = self._lib.revision()
            if current == self.revision:
                return
            self.rebuilt = False
            if self.writable:
                try:
                    with self._store.syncing():
                        self.revision = self._sync()
                    return
                except VectorWriteRefused as e:
                    self.writable = False
                    self._say_lagging(f"the server refused to write it ({e})")
            state = self._store.state(self.model)
            if state is None or state.revision != current:
                self._say_lagging("the library is open read-only")
            self.revision = current

    def _sync(self) -> int:
        """Inside `syncing()`: bring the rows up to date; the revision they reflect now."""
        lib = self._lib
        current = lib.revision()  # read under the lock: no other sync moves the rows until we commit
        state = self._store.state(self.model)
        if state is None or state.dim != self.embedder.dim or not 0 <= state.revision <= current:
            return self._rebuild(current)
        if state.revision == 0:
            events = lib.events(since_seq=0)
        else:
            events = lib.events(since_seq=state.revision - 1)
            if not events or events[0].seq != state.revision or events[0].created_at != state.stamp:
                return self._rebuild(current)  # the rows are of another library made again in this schema
            events = events[1:]
        if events:
            self._catch_up(events)
        return max(current, events[-1].seq) if events else state.revision

    def _rebuild(self, current: int) -> int:
        entries = [e for e in self._lib.list() if e.status == Status.ACTIVE]  # at least as new as `current`
        self._store.clear(self.model)
        self._store.put(
            self.model,
            [(e.id, str(e.zone), str(e.level)) for e in entries],
            self.embedder.embed([entry_text(e) for e in entries]),
            revision=current,
        )
        stamp = None
        if current:
            at = self._lib.events(since_seq=current - 1)
            stamp = at[0].created_at if at and at[0].seq == current else None
        self._store.set_state(self.model, VectorState(current, stamp, self.embedder.dim))
        self.rebuilt = True
        return current

    def _catch_up(self, events: list[Event]) -> None:
        """Re-read the entries `events` touched (read after them, so at least as new): each changed id's row is
        replaced by the entry as it now stands, or removed when it is gone or not active. Idempotent."""
        changed = list(dict.fromkeys(e.experience_id for e in events if e.experience_id))
        found = self._lib.find_retrievable(changed)
        revision = events[-1].seq
        self._store.remove(self.model, [id for id in changed if id not in found])
        entries = list(found.values())
        if entries:
            self._store.put(
                self.model,
                [(e.id, str(e.zone), str(e.level)) for e in entries],
                self.embedder.embed([entry_text(e) for e in entries]),
                revision=revision,
            )
        self._store.set_state(self.model, VectorState(revision, events[-1].created_at, self.embedder.dim))

    def _say_lagging(self, why: str) -> None:
        if not self._lag_said:
            self._lag_said = True
            log.warning(
                "the vector index of %s cannot be brought up to date (%s): dense retrieval searches it as it was "
                "last written",
                self.location,
                why,
            )

    def flush(self) -> None:
        """Sync: what a sync writes is committed at once."""
        self.sync()

    # -- searching ----------------------------------------------------------------------------------------

    def search(
        self, vector: np.ndarray, k: int, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[tuple[str, float]]:
        """The ids of the `k` entries whose embedding is most similar to `vector` (cosine: the inner product of unit
        vectors), best first, with their similarity; ties go to the smaller id, as in the file's index."""
        if k <= 0:
            return []
        with self._lock:
            return self._store.search(
                self.model,
                vector,
                k,
                None if zone is None else str(Zone(zone)),
                None if level is None else str(Level(level)),
            )
