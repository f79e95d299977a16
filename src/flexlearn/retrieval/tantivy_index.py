"""A tantivy index derived from one library, kept beside its file (`<library>.index/`) or, for a library on a
server, in a per-user cache folder of each host that uses it (`index_home`), and kept current by the library's
revision. (One file over 400 lines: building, catching up and committing share one lock, one on-disk format and
one read snapshot of the library, a `flexlearn.library.reader.LibraryReader`: `SnapshotReader` for a file,
`ServerSnapshotReader` for a server.)

The library stays the source of truth. The index records the revision it reflects in `flexlearn.json`, written only
after tantivy has committed, so a crash between the two leaves an index at least as new as it says; catching up
replays the changed ids from the event log, and replaying an id is idempotent (delete the id's document, add
the row as it now stands), so such an index converges. An index that is missing, unreadable, of another format,
or built from another file (the event at its revision is not the one it saw) is rebuilt from the rows.

Between commits, which cost ~70 ms each, the entries changed since the last one live in memory (`Overlay`) and
are merged into every answer; up to `MEMORY_MAX` entries the whole index is in memory too (`MemoryIndex`) and
answers exactly as a fresh build would. tantivy commits the overlay in a background thread every
`COMMIT_EVERY` changes, so no search waits for a commit.

Layout, chosen for speed at a million entries and to rank as FTS5 does: one text field, where each stem is
indexed with its entry's zone and level in front (`gc:ratio` for a golden case), so a filtered search, which is
most searches (flex mode runs one per zone and level), is a plain disjunction of term queries over a sixth of
the postings, where tantivy's block-max WAND skips blocks that cannot reach the top k. A required filter clause
would switch that pruning off. The title is written twice (the weight FTS5 gives it), content and examples once.
BM25's statistics are the whole library's, as FTS5's are: the document count and average length are the one
field's, and each query stem is weighted by FTS5's idf over its document frequency in all six parts (`weight`,
applied as a boost on each term query: `weight / tantivy_idf`). (Format 2 had a field per zone and level, and
tantivy divides a field's tokens by the documents of all fields: on the learned Formula library a part's average
length came out 3 to 52 times too short, which sank the entries of small parts in an unfiltered search; see
docs/retrieval.md, "Ranking".)
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
from pathlib import Path

import tantivy

from flexlearn.atomic import write_atomic
from flexlearn.experience import Level, Zone
from flexlearn.library.reader import IndexRow, LibraryReader, LibrarySource
from flexlearn.library.snapshot import FileSource
from flexlearn.retrieval.index_home import server_index_dir
from flexlearn.retrieval.memory_index import MEMORY_MAX, MemoryIndex
from flexlearn.retrieval.overlay import Overlay, OverlayDoc, bm25, tantivy_idf, weight

log = logging.getLogger(__name__)

# 2: the note counts documents and tokens (the statistics the overlay scores with).
# 3: one text field with zone-and-level-prefixed stems (library-wide statistics) and a field counting documents.
FORMAT = 3
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

_TEXT = "text"
# Every document holds the one term `_COUNTED` here: its document frequency is the document count tantivy's BM25
# divides by (deleted documents included until a merge drops them), which the boosts must cancel exactly.
_COUNT, _COUNTED = "count", "1"
# Query stems in more than this share of a part's documents (and in more than `_COMMON_MIN_DOCS`) are not
# scored in that part; see `_telling`.
COMMON_SHARE = 0.1
_COMMON_MIN_DOCS = 1000
_MIN_STEMS = 3


_LEVEL_CODES = {Level.PRINCIPLE: "r", Level.PATTERN: "p", Level.CASE: "c"}


def part(zone: Zone | str, level: Level | str) -> str:
    """The part of the index that holds one zone and level: the prefix of its entries' terms ("gc", "wr"...)."""
    return f"{Zone(zone).value[0]}{_LEVEL_CODES[Level(level)]}"


PARTS = tuple(part(zone, level) for level in Level for zone in Zone)
_PART_INDEX = {p: i for i, p in enumerate(PARTS)}
# Query stems a searcher keeps (`LibraryIndex._stem`).
_STEMS_MAX = 100_000


def _term(part: str, stem: str) -> str:
    return f"{part}:{stem}"


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
    builder.add_text_field(_COUNT, tokenizer_name="raw", index_option="basic")
    # The text arrives analysed (`LibraryIndex._analyse`) and prefixed: tantivy only splits it at the spaces.
    builder.add_text_field(_TEXT, tokenizer_name="whitespace", index_option="freq")
    return builder.build()


def _text(row: IndexRow) -> str:
    # The title twice: the weight FTS5 gives it.
    _, _, _, title, content, examples = row
    return "\n".join([title, title, content, *json.loads(examples)])


@dataclass
class _Stats:
    """What tantivy's BM25 counts, as the note records it: documents added since the last rebuild and their
    tokens. Replaced documents stay counted, as tantivy counts them until it merges them away."""

    docs: int = 0
    tokens: int = 0

    def copy(self) -> _Stats:
        return _Stats(self.docs, self.tokens)

    def add(self, length: int) -> None:
        self.docs += 1
        self.tokens += length


class _Stem:
    """A query stem as a committed index knows it: its document frequency in each part (`PARTS` order) and in all,
    the idf tantivy gives it in each part (the boost divides it out), its weight by the committed statistics, and
    its term queries boosted to that weight, made when first asked for."""

    __slots__ = ("_queries", "dfs", "idfs", "stem", "total", "weight")

    def __init__(self, stem: str, dfs: tuple[int, ...], docs: int) -> None:
        self.stem, self.dfs, self.total = stem, dfs, sum(dfs)
        self.idfs = tuple(tantivy_idf(df, docs) if df else 0.0 for df in dfs)
        self.weight = weight(self.total, docs)
        self._queries: list[tantivy.Query | None] = [None] * len(PARTS)

    def query(self, schema: tantivy.Schema, i: int, weight: float) -> tantivy.Query:
        """The term query of the stem in part `PARTS[i]`, boosted so that tantivy scores it with `weight`."""
        found = self._queries[i]
        if found is None or weight != self.weight:
            term = tantivy.Query.term_query(schema, _TEXT, _term(PARTS[i], self.stem), index_option="freq")
            # tantivy multiplies the boost by its own idf: what is left is the stem's weight.
            found = tantivy.Query.boost_query(term, weight / self.idfs[i])
            if weight == self.weight:
                self._queries[i] = found
        return found


def index_dir(library_path: Path) -> Path:
    """Where the index of the library at `library_path` lives."""
    return library_path.with_name(library_path.name + ".index")


class IndexBusyError(Exception):
    """Another process holds the index's writer lock for longer than `LOCK_WAIT_S`."""


class LibraryIndex:
    """The tantivy index of one library, read through a read-only connection of its own (a `LibraryReader` of
    `source`: a library file's path, or a `LibrarySource`).

    `sync()` brings it to the library's committed revision; `search()` answers from the last synced state. Reads
    of the library go through one read transaction at a time, so the rows indexed and the revision recorded are
    from the same snapshot. Thread-safe: one lock serialises syncing and searching. `directory`: where the index
    files go; by default beside a file (`index_dir`), in the cache folder for a library on a server
    (`index_home.server_index_dir`).
    """

    def __init__(
        self, source: Path | LibrarySource, *, directory: Path | None = None, memory_max: int = MEMORY_MAX
    ) -> None:
        self.source: LibrarySource = FileSource(source) if isinstance(source, Path) else source
        self._reader: LibraryReader = self.source.reader()
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
        self._outgrown = False  # the memory index was dropped for size since the last commit
        self._stats = _Stats()
        self._part_docs: dict[str, int] = {}  # documents per part at `_committed`
        try:
            self.directory = self._default_directory() if directory is None else directory
            self._index = self._open()
        except BaseException:
            self._reader.close()
            raise
        self._searcher = self._index.searcher()
        self._counted = 0  # the document count of `_searcher`'s BM25
        # Query stems as `_searcher` knows them: every search needs their frequencies in all six parts for the
        # library-wide weight, guidance asks one query six times, and queries share words.
        self._stems: dict[str, _Stem] = {}

    # -- opening ------------------------------------------------------------------------------------------

    def _default_directory(self) -> Path:
        path = self.source.path
        return index_dir(path) if path is not None else server_index_dir(self._reader.identity())

    def _open(self) -> tantivy.Index:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=True)
        except (OSError, ValueError):
            # Unreadable or of another schema: it is derived, so start it again.
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=False)
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
            stats = _Stats(int(meta["docs"]), int(meta["tokens"]))
            return int(meta["revision"]), meta.get("stamp"), stats
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _write_meta(self, reader: LibraryReader, revision: int, stats: _Stats) -> None:
        meta = {
            "format": FORMAT,
            "revision": revision,
            # What identifies the event at `revision`, so an index built from another file at the same revision
            # (a library deleted and made again) is not taken for current.
            "stamp": reader.stamp(revision),
            "library": reader.identity(),  # which library, for whoever looks into the folder (never a password)
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
        """Bring the search view to the library's committed revision: nothing to do when it is there already (one
        read). The first time, the index files catch up (or are rebuilt) and commit; after that, changed
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
            # `_part_docs` counts the last commit: a library that outgrew the memory index since is not read
            # whole again on every change until a commit says how big it is (`_outgrown`, reset by `_refresh`).
            if self._memory is None and not self._outgrown and sum(self._part_docs.values()) <= self._memory_max:
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
            self._memory, self._outgrown = None, True
        self.revision = current

    def _analyse(self, row: IndexRow) -> tuple[str, list[str]]:
        """The row's part and the stems of its text, as the index holds them."""
        _, zone, level, *_ = row
        return part(zone, level), self._analyzer.analyze(_text(row))

    def _document(self, row: IndexRow) -> OverlayDoc:
        where, stems = self._analyse(row)
        return OverlayDoc(where, Counter(stems), len(stems))

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
                self._refresh(_part_counts(reader), current, meta[2])
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
            self._refresh(_part_counts(reader), current, stats)
            return True

    def _commit_overlay(self) -> None:
        """The background commit: the entries changed since the last commit go into tantivy from a snapshot of
        its own; then the search view swaps to the new commit and the overlay keeps only what changed after it.
        A busy writer lock (another process) or an error leaves the overlay as it is, for the next attempt."""
        try:
            with self._commit_lock, self.source.reader() as reader, reader.snapshot():
                current = reader.revision()
                meta = self._read_meta()
                # A copy: searches keep scoring with the current statistics until the new commit is swapped in.
                stats = meta[2] if meta is not None and meta[0] <= current else self._stats.copy()
                changed = reader.changed_since(self._committed)
                if not self._write(reader, changed, stats, rebuild=False):
                    return
                self._write_meta(reader, current, stats)
                # Counted before taking the search lock: on a big library on a server the count takes a while.
                counts = _part_counts(reader)
                with self._lock:
                    self._refresh(counts, current, stats)
        except Exception as e:  # a failed background commit must not kill the process
            log.warning("background commit of %s failed (%s); searches use the overlay", self.directory, e)
        finally:
            with self._lock:
                self._committer = None

    def _write(self, reader: LibraryReader, changed: list[str], stats: _Stats, *, rebuild: bool) -> bool:
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
                where, stems = self._analyse(row)
                text = " ".join(f"{where}:{stem}" for stem in stems)  # `_term` of each stem
                writer.add_document(tantivy.Document(id=row[0], **{_COUNT: _COUNTED, _TEXT: text}))
                stats.add(len(stems))
            writer.commit()
            writer.wait_merging_threads()
        finally:
            # Dropping the writer releases the directory's lock for other processes.
            del writer
        return True

    def _refresh(self, part_docs: dict[str, int], revision: int, stats: _Stats) -> None:
        # `part_docs` is counted inside the read snapshot the index was synced to, so it matches the documents.
        self._part_docs = part_docs
        self._outgrown = False
        self._index.reload()
        self._searcher = self._index.searcher()
        self._counted = self._searcher.doc_freq(_COUNT, _COUNTED)
        self._stems = {}
        self._stats = stats
        self._committed = revision
        self._overlay.drop_through(revision)
        self.revision = max(self.revision, revision)

    # -- searching ----------------------------------------------------------------------------------------

    def stems(self, tokens: Sequence[str]) -> list[str]:
        """`tokens` as the index stores them, each once."""
        return list(dict.fromkeys(self._analyzer.analyze(" ".join(tokens))))

    def search(self, stems: Sequence[str], parts: Sequence[str], k: int) -> list[tuple[str, float]]:
        """The ids of the `k` best documents for any of `stems` in any of `parts` (BM25, each stem weighted by
        its `weight` in the whole library), best first, with their scores, as of the last `sync`: tantivy's
        committed hits less the ids changed since, merged with the overlay's documents scored the same way. Stems
        too common to tell documents apart are left out of a big part (`_telling`)."""
        if not stems or k <= 0:
            return []
        with self._lock:
            if self._memory is not None:
                memory = self._memory
                weights = {s: weight(memory.df[s], len(memory)) for s in stems}
                return memory.search(
                    parts, k, lambda p: _telling(stems, memory.part_docs[p], lambda s: memory.doc_freq(p, s)), weights
                )
            searcher, overlay = self._searcher, self._overlay
            known = {s: self._stem(s) for s in stems}
            added = sum(overlay.docs.values())
            if added:
                changed = list(overlay.df.values())
                docs = self._counted + added
                weights = {s: weight(known[s].total + sum(df[s] for df in changed), docs) for s in stems}
            else:
                weights = {s: known[s].weight for s in stems}
            telling = {
                p: _telling(
                    stems, self._part_docs.get(p, 0) + overlay.docs[p], lambda s, i=_PART_INDEX[p]: known[s].dfs[i]
                )
                for p in parts
            }
            terms = []
            for p in parts:
                i = _PART_INDEX[p]
                terms += [known[s].query(self._schema, i, weights[s]) for s in telling[p] if known[s].dfs[i]]
            ranked: list[tuple[str, float]] = []
            if terms:
                query = tantivy.Query.boolean_query([(tantivy.Occur.Should, term) for term in terms])
                for score, address in searcher.search(query, k + len(overlay), count=False).hits:
                    id = searcher.doc(address)["id"][0]
                    if id not in overlay:
                        ranked.append((id, score))
                        if len(ranked) == k:
                            break
            if len(overlay):
                ranked += self._overlay_hits(telling, weights)
                ranked.sort(key=lambda hit: -hit[1])
            return ranked[:k]

    def _stem(self, stem: str) -> _Stem:
        """The stem as the committed index knows it, kept until the next commit."""
        found = self._stems.get(stem)
        if found is None:
            if len(self._stems) >= _STEMS_MAX:
                self._stems.clear()
            doc_freq = self._searcher.doc_freq
            dfs = tuple(doc_freq(_TEXT, _term(p, stem)) for p in PARTS)
            found = self._stems[stem] = _Stem(stem, dfs, self._counted)
        return found

    def _overlay_hits(self, telling: dict[str, list[str]], weights: dict[str, float]) -> list[tuple[str, float]]:
        overlay, stats = self._overlay, self._stats
        avg_length = (stats.tokens + sum(overlay.tokens.values())) / max(stats.docs + sum(overlay.docs.values()), 1)
        hits = []
        for p, stems in telling.items():
            for id, doc in overlay.documents(p):
                score = sum(
                    bm25(doc.tf[s], doc.length, weight=weights[s], avg_length=avg_length) for s in stems if doc.tf[s]
                )
                if score > 0:
                    hits.append((id, score))
        return hits


def _part_counts(reader: LibraryReader) -> dict[str, int]:
    """The active entries of each part, as `reader` sees the library."""
    return {part(zone, level): n for (zone, level), n in reader.counts_by_zone_level().items()}


def _telling(stems: Sequence[str], docs: int, doc_freq: Callable[[str], int]) -> list[str]:
    """The stems worth scoring in a part of `docs` documents (`doc_freq`: a stem's documents there): all of them
    in a small part; in a big one, those in at most `COMMON_SHARE` of its documents, or the `_MIN_STEMS` rarest
    when none is.

    A problem's commonest words are in half the library; their BM25 weight is a fraction of a rare word's
    and rarely changes the top k, but their long postings are what keeps block-max pruning from skipping
    ahead. Below `_COMMON_MIN_DOCS` documents every stem is kept, so small libraries rank exactly as BM25.
    """
    if docs == 0:
        return []
    limit = max(COMMON_SHARE * docs, _COMMON_MIN_DOCS)
    if docs <= limit:
        return list(stems)
    freqs = {stem: doc_freq(stem) for stem in stems}
    telling = [stem for stem in stems if 0 < freqs[stem] <= limit]
    return telling or sorted((s for s in stems if freqs[s]), key=freqs.__getitem__)[:_MIN_STEMS]
