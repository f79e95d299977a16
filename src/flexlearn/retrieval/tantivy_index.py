"""A tantivy index derived from one library file, kept beside it (`<library>.index/`) and kept current by the
library's revision.

SQLite stays the source of truth. The index records the revision it reflects in `flexlearn.json`, written only
after tantivy has committed, so a crash between the two leaves an index at least as new as it says; catching up
replays the changed ids from the event log, and replaying an id is idempotent (delete the id's document, add
the row as it now stands), so such an index converges. An index that is missing, unreadable, of another format,
or built from another file (the event at its revision is not the one it saw) is rebuilt from the rows.

Layout, chosen for speed at a million entries: the text of each zone and level goes in a field of its own
(`text_golden_case`...), so a filtered search, which is most searches (flex mode runs one per zone and level),
is a plain disjunction of term queries over a sixth of the postings, where tantivy's block-max WAND skips
blocks that cannot reach the top k. A required filter clause would switch that pruning off. The title is
written twice (the weight FTS5 gives it), content and examples once. BM25 statistics are per field, so a
filtered search ranks by statistics of its own zone and level.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import tantivy

from flexlearn.atomic import write_atomic
from flexlearn.experience import Level, Status, Zone

FORMAT = 1
META_FILE = "flexlearn.json"
# tantivy's per-thread indexing heap: small for a catch-up of a few entries, larger for a rebuild.
_CATCH_UP_HEAP = 20_000_000
_REBUILD_HEAP = 200_000_000
# Ids per `IN (...)` when reading changed rows; well under SQLite's parameter limit.
_BATCH = 500
# When more than this share of the entries changed since the index's revision, rebuilding is quicker.
_REBUILD_SHARE = 0.25
# How long to wait for another process that holds the index's writer lock before giving up on the index.
LOCK_WAIT_S = 2.0

_ANALYZER_NAME = "flex_en"
# Only what retrieval may show is indexed: quarantined entries join when approved (a logged change).
_ACTIVE = str(Status.ACTIVE)
_COLUMNS = "id, zone, level, title, content, examples"
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


def index_dir(library_path: Path) -> Path:
    """Where the index of the library at `library_path` lives."""
    return library_path.with_name(library_path.name + ".index")


class IndexBusyError(Exception):
    """Another process holds the index's writer lock for longer than `LOCK_WAIT_S`."""


class LibraryIndex:
    """The tantivy index of one library file, read through its own read-only SQLite connection.

    `sync()` brings it to the file's committed revision; `search()` answers from the last synced state. Reads
    of the file go through one read transaction at a time, so the rows indexed and the revision recorded are
    from the same snapshot. Thread-safe: one lock serialises syncing and searching.
    """

    def __init__(self, library_path: Path, *, directory: Path | None = None) -> None:
        self.library_path = library_path
        self.directory = index_dir(library_path) if directory is None else directory
        self._conn = sqlite3.connect(
            f"{library_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._lock = threading.RLock()
        self._schema = _schema()
        self._analyzer = _analyzer()
        self.revision = -1  # the revision `_searcher` reflects; -1 before the first sync
        self._field_docs: dict[str, int] = {}  # documents per field at `revision`
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
        self._conn.close()

    # -- the file's side ----------------------------------------------------------------------------------

    def _stamp(self, revision: int) -> float | None:
        # What identifies the event at `revision`, so an index built from another file at the same revision
        # (a library deleted and made again) is not taken for current.
        row = self._conn.execute("SELECT created_at FROM events WHERE seq = ?", (revision,)).fetchone()
        return None if row is None else row[0]

    def _file_revision(self) -> int:
        return self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]

    def _read_meta(self) -> tuple[int, float | None] | None:
        try:
            meta = json.loads((self.directory / META_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                return None
            return int(meta["revision"]), meta.get("stamp")
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_meta(self, revision: int) -> None:
        meta = {"format": FORMAT, "revision": revision, "stamp": self._stamp(revision)}
        write_atomic(self.directory / META_FILE, json.dumps(meta))

    def _valid_revision(self, meta: tuple[int, float | None] | None, current: int) -> int | None:
        """The revision the index files reflect, or None when they must be rebuilt."""
        if meta is None or meta[0] > current:
            return None
        revision, stamp = meta
        if revision and self._stamp(revision) != stamp:
            return None
        return revision

    # -- syncing ------------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Bring the index to the file's committed revision: nothing to do when it is there already (one
        SQLite read), else take it from another process's commit, catch up from the event log, or rebuild.
        IndexBusyError when another process keeps the writer lock for longer than `LOCK_WAIT_S`."""
        with self._lock:
            if self._file_revision() == self.revision:
                return
            deadline = time.monotonic() + LOCK_WAIT_S
            while not self._try_update():
                if time.monotonic() > deadline:
                    raise IndexBusyError(f"the index {self.directory} is locked by another process")
                time.sleep(0.02)

    def _try_update(self) -> bool:
        """One attempt at syncing, in one read snapshot of the file; False when the writer lock is taken."""
        self._conn.execute("BEGIN")
        try:
            current = self._file_revision()
            since = self._valid_revision(self._read_meta(), current)
            if since == current:  # another process brought the files up to date
                self._refresh(current)
                return True
            changed: list[str] = []
            if since is not None:
                changed = [
                    r[0]
                    for r in self._conn.execute(
                        "SELECT DISTINCT experience_id FROM events WHERE seq > ? AND experience_id IS NOT NULL",
                        (since,),
                    )
                ]
                total = self._conn.execute("SELECT count(*) FROM experiences").fetchone()[0]
            rebuild = since is None or len(changed) > _REBUILD_SHARE * max(total, 1)
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
                    rows = self._conn.execute(f"SELECT {_COLUMNS} FROM experiences WHERE status = ?", (_ACTIVE,))
                else:
                    for id in changed:
                        writer.delete_documents_by_term("id", id)
                    rows = self._rows(changed)
                self._add(writer, rows)
                writer.commit()
                writer.wait_merging_threads()
            finally:
                # Dropping the writer releases the directory's lock for other processes.
                del writer
            self._write_meta(current)
            self._refresh(current)
            return True
        finally:
            self._conn.execute("COMMIT")

    def _rows(self, ids: Sequence[str]) -> Iterable[sqlite3.Row]:
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            yield from self._conn.execute(
                f"SELECT {_COLUMNS} FROM experiences WHERE status = ? AND id IN ({', '.join('?' * len(batch))})",
                [_ACTIVE, *batch],
            )

    def _add(self, writer: tantivy.IndexWriter, rows: Iterable[tuple[str, str, str, str, str, str]]) -> None:
        for id, zone, level, title, content, examples in rows:
            text = "\n".join([title, title, content, *json.loads(examples)])
            writer.add_document(tantivy.Document(id=id, **{field_name(zone, level): text}))

    def _refresh(self, revision: int) -> None:
        # Called inside the read snapshot the index was synced to, so the counts match the documents.
        self._field_docs = {
            field_name(zone, level): n
            for zone, level, n in self._conn.execute(
                "SELECT zone, level, count(*) FROM experiences WHERE status = ? GROUP BY 1, 2", (_ACTIVE,)
            )
        }
        self._index.reload()
        self._searcher = self._index.searcher()
        self.revision = revision

    # -- searching ----------------------------------------------------------------------------------------

    def stems(self, tokens: Sequence[str]) -> list[str]:
        """`tokens` as the index stores them, each once."""
        return list(dict.fromkeys(self._analyzer.analyze(" ".join(tokens))))

    def search(self, stems: Sequence[str], fields: Sequence[str], k: int) -> list[tuple[str, float]]:
        """The ids of the `k` best documents for any of `stems` in any of `fields` (BM25), best first, with
        their scores, as of the last `sync`. Stems too common to tell documents apart are left out of a big
        field (`_telling`)."""
        if not stems or k <= 0:
            return []
        with self._lock:
            searcher = self._searcher
            terms = [
                tantivy.Query.term_query(self._schema, field, stem, index_option="freq")
                for field in fields
                for stem in self._telling(searcher, field, stems)
            ]
            if not terms:
                return []
            query = tantivy.Query.boolean_query([(tantivy.Occur.Should, term) for term in terms])
            hits = searcher.search(query, k, count=False).hits
            return [(searcher.doc(address)["id"][0], score) for score, address in hits]

    def _telling(self, searcher: tantivy.Searcher, field: str, stems: Sequence[str]) -> list[str]:
        """The stems worth scoring in `field`: all of them in a small field; in a big one, those in at most
        `COMMON_SHARE` of its documents, or the `_MIN_STEMS` rarest when none is.

        A problem's commonest words are in half the library; their BM25 weight is a fraction of a rare word's
        and rarely changes the top k, but their long postings are what keeps block-max pruning from skipping
        ahead. Below `_COMMON_MIN_DOCS` documents every stem is kept, so small libraries rank exactly as BM25.
        """
        docs = self._field_docs.get(field, 0)
        if docs == 0:
            return []
        limit = max(COMMON_SHARE * docs, _COMMON_MIN_DOCS)
        if docs <= limit:
            return list(stems)
        freqs = {stem: searcher.doc_freq(field, stem) for stem in stems}
        telling = [stem for stem in stems if 0 < freqs[stem] <= limit]
        return telling or sorted((s for s in stems if freqs[s]), key=freqs.__getitem__)[:_MIN_STEMS]
