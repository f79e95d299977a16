"""The dense retriever ("dense"): cosine similarity of embeddings (`retrieval.embedder`, WordLlama) over a vector
index of the library's active entries, kept where the library's store says (`Library.vector_store`, chosen by
`open_index`): for a file, in memory and beside it (`<library>.vectors/index.npz`, `VectorIndex` here); for a
PostgreSQL library, in its own database with pgvector (`pgvector_index.ServerVectorIndex`). A server without
pgvector gives `DenseUnavailableError`, saying why; the registry then retrieves lexically and says so once.

It finds what shares meaning rather than words with the query ("operating margin" for "operating income as a
share of revenue"), and, being a bag of word vectors, also ranks unrelated text somewhere: every search returns
its `k` nearest whatever they are. `HybridRetriever` fuses it with the lexical ranking; docs/retrieval.md has
the measurements that decide which one is the default.

Either index is derived, like the tantivy index, and kept current the same way; the rest of this note is the file's
(the server's: `pgvector_index`). The library stays the source of truth: the index notes the revision it reflects
(and the timestamp of the event at that revision, so that a library made again at the same path is not mistaken for
the old one, and the embedding model's id, so that another model's vectors are not reused). Before every search it
reads the file's revision (one SQLite read) and, when the library has changed, re-embeds the entries changed since
(`Library.events(since_seq=...)`) or, when there is no usable index (missing, unreadable, of another format or
model, from another file), embeds every active entry. The file is written atomically (a fresh name, then a rename)
after a rebuild and every `SAVE_EVERY` changes, so a process that stops at any moment leaves either no index or one
at least as old as it says, which the next process catches up from the log.

The library is read through its public methods only, with a read-only `Library` of the index's own (as
`LibraryIndex` keeps a connection of its own): a search answers for the library as committed, also inside a
caller's write transaction and when another process wrote the file. Search is brute force (one matrix-vector
product over the entries of the zone and level asked for): about 1 ms at 10,000 entries, linear beyond.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from flexlearn.errors import ConfigError
from flexlearn.experience import Event, Experience, Level, Status, Zone
from flexlearn.library.search import query_tokens
from flexlearn.library.store import Library
from flexlearn.retrieval.base import Hit
from flexlearn.retrieval.embedder import Embedder, get_embedder

log = logging.getLogger(__name__)

FORMAT = 1
INDEX_FILE = "index.npz"
# Changed entries kept in memory only before the file is written again; a restart re-embeds them from the log.
SAVE_EVERY = 128
_ZONES = list(Zone)
_LEVELS = list(Level)
_FREE = -1  # the zone code of a row that holds no entry


class DenseUnavailableError(ConfigError):
    """Dense retrieval cannot run on this library's store (a PostgreSQL server without pgvector); the message says
    why. `get_retriever` answers "dense" and "hybrid" lexically then, saying so once."""


class VectorSearch(Protocol):
    """What `DenseRetriever` asks of a vector index, in a file's folder (`VectorIndex`) or in a database
    (`pgvector_index.ServerVectorIndex`)."""

    # The library revision the index reflects as far as this process knows (-1 before the first sync), and
    # whether its last sync embedded every entry (for tests and benchmarks).
    revision: int
    rebuilt: bool

    def sync(self) -> None:
        """Bring the index to the library's committed revision."""
        ...

    def search(
        self, vector: np.ndarray, k: int, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[tuple[str, float]]:
        """The ids of the `k` entries most similar to `vector`, best first, with their similarity; ties go to the
        smaller id."""
        ...

    def flush(self) -> None:
        """Sync, and make what the index holds durable where it keeps it."""
        ...

    def close(self) -> None: ...

    def __len__(self) -> int: ...


def vectors_dir(library_path: Path) -> Path:
    """Where the vector index of the library at `library_path` lives."""
    return library_path.with_name(library_path.name + ".vectors")


def entry_text(exp: Experience) -> str:
    """What is embedded for an entry: its title, content and examples, as the lexical retrievers index them."""
    return "\n".join([exp.title, exp.content, *exp.examples])


class VectorIndex:
    """The embeddings of one library file's active entries, with their zone and level, kept current by `sync`.

    Rows live in one growing matrix; a changed entry's old row is freed and reused. Thread-safe: one lock
    serialises syncing and searching.
    """

    def __init__(self, library_path: Path, embedder: Embedder, *, directory: Path | None = None) -> None:
        self.library_path = library_path
        self.embedder = embedder
        self.directory = vectors_dir(library_path) if directory is None else directory
        self._reader = Library.open_read_only(library_path)
        self._lock = threading.RLock()
        self.revision = -1  # the revision the rows reflect; -1 before the first sync
        self._stamp: float | None = None
        self._vectors = np.zeros((0, embedder.dim), dtype=np.float32)
        self._zones = np.zeros(0, dtype=np.int8)
        self._levels = np.zeros(0, dtype=np.int8)
        self._ids: list[str | None] = []
        self._row: dict[str, int] = {}
        self._free: list[int] = []
        self._unsaved = 0
        self._can_save = True
        self.rebuilt = False  # whether the last sync embedded every entry (for tests and benchmarks)

    def close(self) -> None:
        """Close the index's read connection to the library. The file beside it stays for the next process."""
        self._reader.close()

    def __len__(self) -> int:
        return len(self._row)

    # -- keeping current ----------------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the rows to the file's committed revision: nothing to do when they are there (one read)."""
        with self._lock:
            lib = self._reader
            with lib.snapshot():
                current = lib.revision()
                if current == self.revision:
                    return
                first = self.revision < 0
                self.rebuilt = False
                if first and not self._load(lib, current):
                    self._rebuild(lib, current)
                elif self.revision != current:
                    self._catch_up(lib, lib.events(since_seq=self.revision), current)
            # A new process writes what it caught up at once, so the next one starts from there.
            if self.rebuilt or self._unsaved >= SAVE_EVERY or (first and self._unsaved):
                self.save()

    def _stamp_at(self, events: list[Event], revision: int) -> float | None:
        # The first of `events` (those after revision - 1) is the one at `revision`, when there is one.
        return events[0].created_at if events and events[0].seq == revision else None

    def _load(self, lib: Library, current: int) -> bool:
        """Read the file and catch it up; False when it must be rebuilt."""
        meta, arrays = _read(self.directory / INDEX_FILE)
        if meta is None or arrays is None:
            return False
        if meta.get("format") != FORMAT or meta.get("model") != self.embedder.model_id:
            return False
        revision = meta.get("revision")
        if not isinstance(revision, int) or revision < 0 or revision > current:
            return False
        events = lib.events(since_seq=revision - 1) if revision else lib.events(since_seq=0)
        if revision and self._stamp_at(events, revision) != meta.get("stamp"):
            return False  # the file was built from another library at this path
        vectors, ids, zones, levels = arrays
        if vectors.shape != (len(ids), self.embedder.dim) or not (len(ids) == len(zones) == len(levels)):
            return False
        self._set_rows(vectors, [str(i) for i in ids], zones, levels)
        self.revision, self._stamp = revision, meta.get("stamp")
        if revision:
            events = events[1:]
        if revision != current:
            self._catch_up(lib, events, current)
        return True

    def _rebuild(self, lib: Library, current: int) -> None:
        entries = [e for e in lib.list() if e.status == Status.ACTIVE]
        vectors = self.embedder.embed([entry_text(e) for e in entries])
        zones = np.array([_ZONES.index(Zone(e.zone)) for e in entries], dtype=np.int8)
        levels = np.array([_LEVELS.index(Level(e.level)) for e in entries], dtype=np.int8)
        self._set_rows(vectors, [e.id for e in entries], zones, levels)
        self._stamp = self._stamp_at(lib.events(since_seq=current - 1), current) if current else None
        self.revision = current
        self.rebuilt = True

    def _catch_up(self, lib: Library, events: list[Event], current: int) -> None:
        """Re-read the entries `events` touched: each changed id's row is replaced by the entry as it now stands,
        or freed when it is gone or not active. Idempotent."""
        changed = list(dict.fromkeys(e.experience_id for e in events if e.experience_id))
        found = lib.find_retrievable(changed)
        for id in changed:
            self._drop(id)
        entries = list(found.values())
        if entries:
            self._put(entries, self.embedder.embed([entry_text(e) for e in entries]))
        self._unsaved += len(changed)
        self._stamp = events[-1].created_at if events else self._stamp
        self.revision = current

    def _set_rows(self, vectors: np.ndarray, ids: list[str], zones: np.ndarray, levels: np.ndarray) -> None:
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._zones = np.asarray(zones, dtype=np.int8).copy()
        self._levels = np.asarray(levels, dtype=np.int8).copy()
        self._ids = list(ids)
        self._row = {id: row for row, id in enumerate(ids)}
        self._free = []
        self._unsaved = 0

    def _drop(self, id: str) -> None:
        row = self._row.pop(id, None)
        if row is not None:
            self._ids[row] = None
            self._zones[row] = _FREE
            self._free.append(row)

    def _put(self, entries: list[Experience], vectors: np.ndarray) -> None:
        need = len(entries) - len(self._free)
        if need > 0:
            size = len(self._ids)
            grow = max(need, size // 2, 64)
            self._vectors = np.concatenate([self._vectors, np.zeros((grow, self.embedder.dim), dtype=np.float32)])
            self._zones = np.concatenate([self._zones, np.full(grow, _FREE, dtype=np.int8)])
            self._levels = np.concatenate([self._levels, np.zeros(grow, dtype=np.int8)])
            self._ids += [None] * grow
            self._free += reversed(range(size, size + grow))  # lowest first off the end
        for exp, vector in zip(entries, vectors, strict=True):
            row = self._free.pop()
            self._vectors[row] = vector
            self._zones[row] = _ZONES.index(Zone(exp.zone))
            self._levels[row] = _LEVELS.index(Level(exp.level))
            self._ids[row] = exp.id
            self._row[exp.id] = row

    # -- the file -----------------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the rows and the revision they reflect, atomically. A folder that cannot be written leaves the
        index in memory only (logged once)."""
        with self._lock:
            if not self._can_save or self.revision < 0:
                return
            live = np.flatnonzero(self._zones != _FREE)
            meta = {"format": FORMAT, "model": self.embedder.model_id, "revision": self.revision, "stamp": self._stamp}
            try:
                _write(
                    self.directory / INDEX_FILE,
                    meta,
                    vectors=self._vectors[live],
                    ids=np.array([self._ids[r] for r in live], dtype=str),
                    zones=self._zones[live],
                    levels=self._levels[live],
                )
            except OSError as e:
                self._can_save = False
                log.warning("cannot write the vector index %s (%s); it is kept in memory only", self.directory, e)
                return
            self._unsaved = 0

    def flush(self) -> None:
        """Sync, and write the file when it lags behind: for tests, benchmarks and before handing files on."""
        self.sync()
        if self._unsaved:
            self.save()

    # -- searching ----------------------------------------------------------------------------------------

    def search(
        self, vector: np.ndarray, k: int, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[tuple[str, float]]:
        """The ids of the `k` entries most similar to `vector` (cosine), best first, with their similarity, as
        of the last `sync`; ties go to the smaller id, so an answer does not depend on the rows' history."""
        with self._lock:
            valid = self._zones != _FREE
            if zone is not None:
                valid &= self._zones == _ZONES.index(Zone(zone))
            if level is not None:
                valid &= self._levels == _LEVELS.index(Level(level))
            rows = np.flatnonzero(valid)
            if k <= 0 or not rows.size:
                return []
            # einsum, not `@`: a matrix-vector product goes to OpenBLAS, whose threads wait for cores on a busy
            # machine (10 ms at 10,000 rows under load, against 0.3 ms here).
            scores = np.einsum("ij,j->i", self._vectors[rows], vector)
            if rows.size > k:
                # Everything tied with the k-th best stays in, for the tie-break below.
                kth = np.partition(scores, rows.size - k)[rows.size - k]
                keep = scores >= kth
                rows, scores = rows[keep], scores[keep]
            ranked = sorted(
                zip(scores.tolist(), (self._ids[r] for r in rows), strict=True), key=lambda h: (-h[0], h[1])
            )
            return [(str(id), score) for score, id in ranked[:k]]


def _write(path: Path, meta: dict[str, object], **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(path: Path) -> tuple[dict | None, tuple[np.ndarray, ...] | None]:
    """The note and arrays of an index file; (None, None) when it is missing or unreadable in any way."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = tuple(data[name] for name in ("vectors", "ids", "zones", "levels"))
    except FileNotFoundError:
        return None, None
    except Exception as e:  # a damaged file of any kind: it is derived, so it is rebuilt
        log.warning("the vector index %s is unreadable (%s); rebuilding it", path, e)
        return None, None
    return (meta if isinstance(meta, dict) else None), arrays


# Open indexes by library file or server library, as for the tantivy index: factories run once per evaluation or
# absorbed problem. A server library on which dense retrieval is unavailable is remembered with the reason.
_OPEN: OrderedDict[tuple[object, ...], VectorSearch] = OrderedDict()
_OPEN_MAX = 8
_OPEN_LOCK = threading.Lock()
_UNAVAILABLE: dict[tuple[object, ...], str] = {}


def _cached(key: tuple[object, ...], make: Callable[[], VectorSearch]) -> VectorSearch:
    with _OPEN_LOCK:
        if key in _UNAVAILABLE:
            raise DenseUnavailableError(_UNAVAILABLE[key])
        index = _OPEN.get(key)
        if index is None:
            try:
                index = _OPEN[key] = make()
            except DenseUnavailableError as e:
                _UNAVAILABLE[key] = str(e)
                raise
            if len(_OPEN) > _OPEN_MAX:
                _OPEN.popitem(last=False)[1].close()
        _OPEN.move_to_end(key)
        return index


def open_index(library: Library, embedder: Embedder) -> VectorSearch:
    """The (cached) vector index of `library` for `embedder`'s model, where its store keeps one: in its own
    database (`Library.vector_store`, pgvector) or in memory and beside the file. DenseUnavailableError, saying
    why, where dense retrieval cannot run (a server without pgvector)."""
    if library.vector_store() is None:
        if library.path is None:
            raise DenseUnavailableError(f"{library.location} keeps no embeddings and has no folder to keep them in")
        return open_vectors(library.path, embedder)
    # Imported here: it needs this module (entry_text), and a file never needs it.
    from flexlearn.retrieval.pgvector_index import ServerVectorIndex

    key = ("server", library.location, library.read_only, embedder.model_id)
    return _cached(key, lambda: ServerVectorIndex(library, embedder))


def open_vectors(path: Path, embedder: Embedder) -> VectorIndex:
    """The (cached) vector index of the library file at `path` for `embedder`'s model; keyed by the file's inode
    too, so a library deleted and made again at the same path gets an index of its own."""
    stat = os.stat(path)
    key = ("file", str(path.resolve()), stat.st_dev, stat.st_ino, embedder.model_id)
    index = _cached(key, lambda: VectorIndex(path, embedder))
    assert isinstance(index, VectorIndex)
    return index


def close_all() -> None:
    """Close and forget every open index, and what was unavailable where (tests, and benchmarks that time a fresh
    process's first search)."""
    with _OPEN_LOCK:
        _UNAVAILABLE.clear()
        while _OPEN:
            _OPEN.popitem()[1].close()


class DenseRetriever:
    """`Retriever` by embedding similarity over the library's vector index (`open_index`). DenseUnavailableError
    where its store cannot keep one (a server without pgvector); a ConfigError naming the extra without the
    model's package."""

    def __init__(self, library: Library, *, embedder: Embedder | None = None) -> None:
        self.library = library
        self.embedder = get_embedder() if embedder is None else embedder
        self._index = open_index(library, self.embedder)
        # select_guidance asks one query six times (once per zone and level): embed it once.
        self._embed = lru_cache(maxsize=8)(self._embed_query)

    def _embed_query(self, query: str) -> np.ndarray:
        return self.embedder.embed([query])[0]

    @property
    def index(self) -> VectorSearch:
        return self._index

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.search`. Scores are cosine similarities. A query with no word worth searching for
        (`query_tokens`: stop words only, punctuation) gives [], as for the lexical retrievers."""
        # Validate like the FTS5 filters: an unknown zone or level is a ValueError.
        zone = None if zone is None else Zone(zone)
        level = None if level is None else Level(level)
        if k <= 0 or not query_tokens(query):
            return []
        self._index.sync()
        ranked = self._index.search(self._embed(query), k, zone, level)
        return _resolve(self.library, ranked)

    def neighbours(
        self, exp: Experience, *, k: int = 5, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        """See `Retriever.neighbours`. The query is the experience's embedded text (`entry_text`)."""
        hits = self.search(entry_text(exp), k=k + 1, zone=zone, level=level)
        return [h for h in hits if not exp.id or h.experience.id != exp.id][:k]


def _resolve(library: Library, ranked: Iterable[tuple[str, float]]) -> list[Hit]:
    ranked = list(ranked)
    found = library.find_retrievable([id for id, _ in ranked])
    # An id missing here was deleted (or quarantined) after the sync: leave it out rather than show stale text.
    return [Hit(found[id], score) for id, score in ranked if id in found]
