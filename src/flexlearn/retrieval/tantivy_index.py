"""A tantivy index derived from one library file, kept beside it (`<library>.index/`) and kept current by the
library's revision. (One file over 400 lines: building, catching up and committing share one lock, one on-disk
format and one read snapshot of the library, `flexlearn.library.snapshot.SnapshotReader`.)

SQLite stays the source of truth. The index records the revision it reflects in `flexlearn.json`, written only
after tantivy has committed, so a crash between the two leaves an index at least as new as it says; catching up
replays the changed ids from the event log, and replaying an id is idempotent (delete the id's document, add
the row as it now stands), so such an index converges. An index that is missing, unreadable, of another format,
or built from another file (the event at its revision is not the one it saw) is rebuilt from the rows.

Between commits, which cost ~70 ms each, the entries changed since the last one live in memory (`Overlay`) and
are merged into every answer; up to `MEMORY_MAX` entries the whole index is in memory too (`MemoryIndex`) and
answers exactly as a fresh build would. tantivy commits the overlay in a background thread every
`COMMIT_EVERY` changes, so no search waits for a commit.

Layout, chosen for speed at a million entries: the text of each zone and level goes in a field of its own
(`text_golden_case`...), so a filtered search, which is most searches (flex mode runs one per zone and level),
is a plain disjunction of term queries over a sixth of the postings, where tantivy's block-max WAND skips
blocks that cannot reach the top k. A required filter clause would switch that pruning off. The title is
written twice (the weight FTS5 gives it), content and examples once. BM25 statistics are per field, so a
filtered search ranks by statistics of its own zone and level.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import tantivy

from flexlearn.atomic import write_atomic
from flexlearn.experience import Level, Zone
from flexlearn.library.snapshot import IndexRow, SnapshotReader
from flexlearn.retrieval.memory_index import MEMORY_MAX, MemoryIndex
from flexlearn.retrieval.overlay import Overlay, OverlayDoc, bm25

log = logging.getLogger(__name__)

# 2: the note counts documents and tokens (the statistics the overlay scores with).
FORMAT = 2
META_FILE = "flexlearn.json"
# tantivy's per-thread indexing heap: small for a catch-up of a few entries, larger for a rebuild.
_CATCH_UP_HEAP = 20_000_000
_REBUILD_HEAP = 200_000_000
# When more than this share of the entries changed since the index's revision, rebuilding is quicker.
_REBUILD_SHARE = 0.25
# How long to wait for another process that holds the index's writer lock before giving up on the index.
LOCK_WAIT_S = 2.0
# Changed entries the overlay collects before a background commit; past `OVERLAY_MAX` (commits kept failing, say,
# because another process holds the lock) a search waits for a commit rather than score a big overlay.
COMMIT_EVERY = 128
OVERLAY_MAX = 4096

_ANALYZER_NAME = "flex_en"
# Query stems in more than this share of a field's documents (and in more than `_COMMON_MIN_DOCS`) are not
# scored in that field; see `LibraryIndex._telling`.
COMMON_SHARE = 0.1
_COMMON_MIN_DOCS = 1000
_MIN_STEMS = 3


def field_name(zone: Zone | str, level: Level | str) -> str:
    """The text field of one zone and level."""
    return f"text_{Zone(zone)}_{Level(level)}"


def _analyzer() -> tantivy.TextAnalyzer:
    # The same split as FTS5's unicode61 (runs of letters and digits), lower-cased, then an English stemmer,
    # as FTS5's porter: `factorise` and `factorisation` meet.
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    for level in Level:
        for zone in Zone:
            builder.add_text_field(field_name(zone, level), tokenizer_name=_ANALYZER_NAME, index_option="freq")
    return builder.build()


def _text(row: IndexRow) -> str:
    # The title twice: the weight FTS5 gives it.
    _, _, _, title, content, examples = row
    return "\n".join([title, title, content, *json.loads(examples)])


@dataclass
class _Stats:
    """What tantivy's BM25 counts, as the note records it: documents added since the last rebuild and their
    tokens per field. Replaced documents stay counted, as tantivy counts them until it merges them away."""

    docs: int = 0
    tokens: dict[str, int] = dataclass_field(default_factory=dict)

    def copy(self) -> _Stats:
        return _Stats(self.docs, dict(self.tokens))

    def add(self, field: str, length: int) -> None:
        self.docs += 1
        self.tokens[field] = self.tokens.get(field, 0) + length


def index_dir(library_path: Path) -> Path:
    """Where the index of the library at `library_path` lives."""
    return library_path.with_name(library_path.name + ".index")


class IndexBusyError(Exception):
    """Another process holds the index's writer lock for longer than `LOCK_WAIT_S`."""


class LibraryIndex:
    """The tantivy index of one library file, read through a read-only connection of its own (`SnapshotReader`).

    `sync()` brings it to the file's committed revision; `search()` answers from the last synced state. Reads
    of the file go through one read transaction at a time, so the rows indexed and the revision recorded are
    from the same snapshot. Thread-safe: one lock serialises syncing and searching.
    """

    def __init__(self, library_path: Path, *, directory: Path | None = None, memory_max: int = MEMORY_MAX) -> None:
        self.library_path = library_path
        self.directory = index_dir(library_path) if directory is None else directory
        self._reader = SnapshotReader(library_path)
        self._lock = threading.RLock()
        # Held by whoever writes the index files (a catch-up or the background commit): one at a time.
        self._commit_lock = threading.Lock()
        self._committer: threading.Thread | None = None
        self._schema = _schema()
        self._analyzer = _analyzer()
        self.revision = -1  # the revision searches reflect (`_searcher` and `_overlay`); -1 before the first sync
        self._committed = -1  # the revision `_searcher` reflects
        self._overlay = Overlay()
        # Up to `memory_max` entries, searches are answered from memory (`MemoryIndex`), exactly.
        self._memory_max = memory_max
        self._memory: MemoryIndex | None = None
        self._stats = _Stats()
        self._field_docs: dict[str, int] = {}  # documents per field at `_committed`
        self._index = self._open()
        self._searcher = self._index.searcher()

    # -- opening ------------------------------------------------------------------------------------------

    def _open(self) -> tantivy.Index:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=True)
        except (OSError, ValueError):
            # Unreadable or of another schema: it is derived, so start it again.
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=False)
        index.register_tokenizer(_ANALYZER_NAME, self._analyzer)
        return index

    def close(self) -> None:
        """Close the read connection. The index files stay for the next process."""
        self._reader.close()

    # -- the file's side ----------------------------------------------------------------------------------

    def _read_meta(self) -> tuple[int, float | None, _Stats] | None:
        try:
            meta = json.loads((self.directory / META_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                return None
            stats = _Stats(int(meta["docs"]), {str(k): int(v) for k, v in meta["tokens"].items()})
            return int(meta["revision"]), meta.get("stamp"), stats
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _write_meta(self, reader: SnapshotReader, revision: int, stats: _Stats) -> None:
        meta = {
            "format": FORMAT,
            "revision": revision,
            # What identifies the event at `revision`, so an index built from another file at the same revision
            # (a library deleted and made again) is not taken for current.
            "stamp": reader.stamp(revision),
            "docs": stats.docs,
            "tokens": stats.tokens,
        }
        write_atomic(self.directory / META_FILE, json.dumps(meta))

    def _valid_revision(self, meta: tuple[int, float | None, _Stats] | None, current: int) -> int | None:
        """The revision the index files reflect, or None when they must be rebuilt."""
        if meta is None or meta[0] > current:
            return None
        revision, stamp, _ = meta
        if revision and self._reader.stamp(revision) != stamp:
            return None
        return revision

    # -- syncing ------------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the search view to the file's committed revision: nothing to do when it is there already (one
        SQLite read). The first time, the index files catch up (or are rebuilt) and commit; after that, changed
        entries go to the in-memory overlay and tantivy commits them in a background thread once there are
        `COMMIT_EVERY`, so no search waits for a commit. IndexBusyError when another process keeps the writer
        lock for longer than `LOCK_WAIT_S` on a catch-up that cannot wait."""
        with self._lock:
            if self._reader.revision() == self.revision:
                return
            # Never while a background commit runs: it needs this lock to finish, and holds the commit lock.
            if self.revision < 0 or (len(self._overlay) >= OVERLAY_MAX and self._committer is None):
                self._catch_up()
            self._extend()
            if len(self._overlay) >= COMMIT_EVERY and self._committer is None:
                self._committer = threading.Thread(target=self._commit_overlay, name="flexlearn-index", daemon=True)
                self._committer.start()

    def flush(self) -> None:
        """Commit what the overlay holds and wait for it: for tests, and before handing the files on."""
        while True:
            with self._lock:
                committer = self._committer
                if committer is None:
                    self._catch_up()
                    return
            committer.join()

    def _catch_up(self) -> None:
        with self._commit_lock:
            deadline = time.monotonic() + LOCK_WAIT_S
            while not self._try_update():
                if time.monotonic() > deadline:
                    raise IndexBusyError(f"the index {self.directory} is locked by another process")
                time.sleep(0.02)

    def _extend(self) -> None:
        """Put the entries changed since the view's revision in the overlay and the memory index, from one read
        snapshot. A library small enough gets its memory index here; one grown past `memory_max` loses it."""
        reader = self._reader
        with reader.snapshot():
            current = reader.revision()
            if self._memory is None and sum(self._field_docs.values()) <= self._memory_max:
                self._memory = MemoryIndex()
                for row in reader.active_rows():
                    self._memory.put(row[0], self._document(row))
            changed = reader.last_changes_since(self.revision)
            docs = {row[0]: self._document(row) for row in reader.active_rows(list(changed))}
        for id, seq in changed.items():
            self._overlay.put(id, seq, docs.get(id))
            if self._memory is not None:
                self._memory.put(id, docs.get(id))
        if self._memory is not None and len(self._memory) > self._memory_max:
            self._memory = None
        self.revision = current

    def _document(self, row: IndexRow) -> OverlayDoc:
        _, zone, level, *_ = row
        stems = self._analyzer.analyze(_text(row))
        return OverlayDoc(field_name(zone, level), Counter(stems), len(stems))

    def _try_update(self) -> bool:
        """One attempt at syncing the files, in one read snapshot of the file; False when the writer lock is
        taken. Afterwards the overlay is empty."""
        reader = self._reader
        with reader.snapshot():
            current = reader.revision()
            meta = self._read_meta()
            since = self._valid_revision(meta, current)
            if since == current:  # another process brought the files up to date
                assert meta is not None
                self._refresh(reader, current, meta[2])
                return True
            changed: list[str] = []
            if since is not None:
                changed = reader.changed_since(since)
                total = reader.count()
            rebuild = since is None or len(changed) > _REBUILD_SHARE * max(total, 1)
            stats = _Stats() if rebuild or meta is None else meta[2]
            if not self._write(reader, changed, stats, rebuild=rebuild):
                return False
            self._write_meta(reader, current, stats)
            self._refresh(reader, current, stats)
            return True

    def _commit_overlay(self) -> None:
        """The background commit: the entries changed since the last commit go into tantivy from a snapshot of
        its own; then the search view swaps to the new commit and the overlay keeps only what changed after it.
        A busy writer lock (another process) or an error leaves the overlay as it is, for the next attempt."""
        try:
            with self._commit_lock, SnapshotReader(self.library_path) as reader, reader.snapshot():
                current = reader.revision()
                meta = self._read_meta()
                # A copy: searches keep scoring with the current statistics until the new commit is swapped in.
                stats = meta[2] if meta is not None and meta[0] <= current else self._stats.copy()
                changed = reader.changed_since(self._committed)
                if not self._write(reader, changed, stats, rebuild=False):
                    return
                self._write_meta(reader, current, stats)
                with self._lock:
                    self._refresh(reader, current, stats)
        except Exception as e:  # a failed background commit must not kill the process
            log.warning("background commit of %s failed (%s); searches use the overlay", self.directory, e)
        finally:
            with self._lock:
                self._committer = None

    def _write(self, reader: SnapshotReader, changed: list[str], stats: _Stats, *, rebuild: bool) -> bool:
        """Replace the `changed` documents (or all, `rebuild`) and commit, counting what is added into `stats`;
        False when the writer lock is taken."""
        try:
            if rebuild:
                writer = self._index.writer(heap_size=_REBUILD_HEAP, num_threads=min(4, os.cpu_count() or 1))
            else:
                writer = self._index.writer(heap_size=_CATCH_UP_HEAP, num_threads=1)
        except ValueError:  # the lock file is taken
            return False
        try:
            if rebuild:
                writer.delete_all_documents()
            else:
                for id in changed:
                    writer.delete_documents_by_term("id", id)
            for row in reader.active_rows(None if rebuild else changed):
                text = _text(row)
                field = field_name(row[1], row[2])
                writer.add_document(tantivy.Document(id=row[0], **{field: text}))
                stats.add(field, len(self._analyzer.analyze(text)))
            writer.commit()
            writer.wait_merging_threads()
        finally:
            # Dropping the writer releases the directory's lock for other processes.
            del writer
        return True

    def _refresh(self, reader: SnapshotReader, revision: int, stats: _Stats) -> None:
        # Called inside the read snapshot the index was synced to, so the counts match the documents.
        self._field_docs = {field_name(zone, level): n for (zone, level), n in reader.counts_by_zone_level().items()}
        self._index.reload()
        self._searcher = self._index.searcher()
        self._stats = stats
        self._committed = revision
        self._overlay.drop_through(revision)
        self.revision = max(self.revision, revision)

    # -- searching ----------------------------------------------------------------------------------------

    def stems(self, tokens: Sequence[str]) -> list[str]:
        """`tokens` as the index stores them, each once."""
        return list(dict.fromkeys(self._analyzer.analyze(" ".join(tokens))))

    def search(self, stems: Sequence[str], fields: Sequence[str], k: int) -> list[tuple[str, float]]:
        """The ids of the `k` best documents for any of `stems` in any of `fields` (BM25), best first, with
        their scores, as of the last `sync`: tantivy's committed hits less the ids changed since, merged with
        the overlay's documents scored the same way. Stems too common to tell documents apart are left out of a
        big field (`_telling`)."""
        if not stems or k <= 0:
            return []
        with self._lock:
            if self._memory is not None:
                memory = self._memory
                return memory.search(fields, k, lambda f: _telling(stems, memory.field_docs[f], memory.doc_freq, f))
            searcher, overlay = self._searcher, self._overlay
            telling = {
                field: _telling(stems, self._field_docs.get(field, 0) + overlay.docs[field], searcher.doc_freq, field)
                for field in fields
            }
            terms = [
                tantivy.Query.term_query(self._schema, field, stem, index_option="freq")
                for field in fields
                for stem in telling[field]
            ]
            if not terms:
                return []
            ranked: list[tuple[str, float]] = []
            query = tantivy.Query.boolean_query([(tantivy.Occur.Should, term) for term in terms])
            for score, address in searcher.search(query, k + len(overlay), count=False).hits:
                id = searcher.doc(address)["id"][0]
                if id not in overlay:
                    ranked.append((id, score))
                    if len(ranked) == k:
                        break
            if len(overlay):
                ranked += self._overlay_hits(searcher, telling)
                ranked.sort(key=lambda hit: -hit[1])
            return ranked[:k]

    def _overlay_hits(self, searcher: tantivy.Searcher, telling: dict[str, list[str]]) -> list[tuple[str, float]]:
        overlay, stats = self._overlay, self._stats
        docs = stats.docs + sum(overlay.docs.values())
        hits = []
        for field, stems in telling.items():
            found = overlay.documents(field)
            if not found or not stems:
                continue
            avg_length = (stats.tokens.get(field, 0) + overlay.tokens[field]) / max(docs, 1)
            df = {s: searcher.doc_freq(field, s) + overlay.df[field][s] for s in stems}
            for id, doc in found:
                score = sum(
                    bm25(doc.tf[s], doc.length, df=df[s], docs=docs, avg_length=avg_length) for s in stems if doc.tf[s]
                )
                if score > 0:
                    hits.append((id, score))
        return hits


def _telling(stems: Sequence[str], docs: int, doc_freq: Callable[[str, str], int], field: str) -> list[str]:
    """The stems worth scoring in `field`, of `docs` documents: all of them in a small field; in a big one,
    those in at most `COMMON_SHARE` of its documents, or the `_MIN_STEMS` rarest when none is.

    A problem's commonest words are in half the library; their BM25 weight is a fraction of a rare word's
    and rarely changes the top k, but their long postings are what keeps block-max pruning from skipping
    ahead. Below `_COMMON_MIN_DOCS` documents every stem is kept, so small libraries rank exactly as BM25.
    """
    if docs == 0:
        return []
    limit = max(COMMON_SHARE * docs, _COMMON_MIN_DOCS)
    if docs <= limit:
        return list(stems)
    freqs = {stem: doc_freq(field, stem) for stem in stems}
    telling = [stem for stem in stems if 0 < freqs[stem] <= limit]
    return telling or sorted((s for s in stems if freqs[s]), key=freqs.__getitem__)[:_MIN_STEMS]
