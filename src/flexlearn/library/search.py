"""Lexical search over the library's own index: turning any text into the words to look for, and ranking.

The index lives with the library and is kept in step with every write, inside the write's transaction: an FTS5
table kept by triggers in an SQLite file (ranked by BM25), a generated tsvector column on a PostgreSQL server
(ranked by `ts_rank`); each backend ranks in its own way (`Database.search`), over the same `query_tokens`.
`flexlearn.retrieval.Bm25Retriever` puts this search behind the `Retriever` protocol.
"""

from __future__ import annotations

import builtins
import re

from flexlearn.experience import Experience, Level, Zone
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
    return fts_match(query_tokens(text))


def fts_match(tokens: builtins.list[str]) -> str:
    """The FTS5 query matching any of `tokens` (each quoted, so none is read as syntax)."""
    return " OR ".join(f'"{t}"' for t in tokens)


class Search(LibraryBase):
    """The library's lexical search (a mixin of `Library`)."""

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> builtins.list[tuple[Experience, float]]:
        """The `k` experiences that best match `query` (title, content and examples; title words weigh most), best
        first, each with its score (higher is better; BM25 in a file, `ts_rank` on a server). Any text is a valid
        query; one with no searchable word gives []. Quarantined entries (imported, not yet approved) are never
        returned."""
        tokens = query_tokens(query)
        if not tokens or k <= 0:
            return []
        where, params = filters(zone, level, prefix="e.")
        return [(to_experience(r), float(r["score"])) for r in self._conn.search(tokens, where, params, k)]
