"""Lexical search over the library's own FTS5 index: turning any text into a safe query, and BM25 ranking.

The index lives in the same file and SQLite triggers keep it in step with every write, inside the write's
transaction. `flexlearn.retrieval.Bm25Retriever` puts this search behind the `Retriever` protocol.
"""

from __future__ import annotations

import builtins
import re

from flexlearn.experience import Experience, Level, Status, Zone
from flexlearn.library.base import LibraryBase
from flexlearn.library.rows import filters, to_experience

MAX_QUERY_TOKENS = 64

# Bare words to leave out of a search: they match nearly every lesson and only dilute BM25.
_STOP_WORDS_TEXT = """a an and are as at be but by can do does for from has have how if in into is it its not no of
    on or so such that the then there these this to was we were what when where which while who will with you
    your our us let use using than thus also all any each may must should would could"""
_STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
# Runs of letters and digits: the same split unicode61 makes, so every token we quote is one FTS token.
_TOKEN = re.compile(r"[^\W_]+")


def query_tokens(text: str) -> builtins.list[str]:
    """The words of `text` worth searching for, lower-cased, each once, in order; [] when there are none.

    When there are too many tokens the longer ones are kept, longer words being the rarer and more telling.
    Every search of the library (FTS5 here, any index-backed retriever) starts from this list, so they all
    look for the same words.
    """
    tokens = [t for t in dict.fromkeys(_TOKEN.findall(text.lower())) if len(t) > 1 and t not in _STOP_WORDS]
    if len(tokens) > MAX_QUERY_TOKENS:
        tokens = sorted(tokens, key=len, reverse=True)[:MAX_QUERY_TOKENS]
    return tokens


def fts_query(text: str) -> str:
    """Turn any text into a safe FTS5 query: an OR of quoted `query_tokens`, or "" when nothing is worth
    searching. Quoting every token means no input (quotes, `NEAR`, `*`, LaTeX, SMILES) can be read as FTS syntax.
    """
    return " OR ".join(f'"{t}"' for t in query_tokens(text))


class Search(LibraryBase):
    """The library's BM25 search (a mixin of `Library`)."""

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> builtins.list[tuple[Experience, float]]:
        """The `k` experiences that best match `query` (BM25 over title, content and examples), best first,
        each with its score (higher is better). Any text is a valid query; one with no searchable word gives [].
        Quarantined entries (imported, not yet approved) are never returned."""
        match = fts_query(query)
        if not match or k <= 0:
            return []
        where, params = filters(zone, level, prefix="e.")
        # Title words weigh most (a title is the lesson in brief); examples least (they quote raw attempts).
        rows = self._conn.execute(
            "SELECT e.*, -bm25(experiences_fts, 2.0, 1.0, 0.5) AS score"
            " FROM experiences_fts JOIN experiences e ON e.seq = experiences_fts.rowid"
            f" WHERE experiences_fts MATCH ? AND e.status = ?{where} ORDER BY score DESC, e.seq LIMIT ?",
            [match, str(Status.ACTIVE), *params, k],
        )
        return [(to_experience(r), r["score"]) for r in rows]
