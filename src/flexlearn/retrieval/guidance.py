"""Forward guidance: the experiences the actor sees for one problem, chosen over a `Retriever` within a token
budget."""

from __future__ import annotations

import re

from flexlearn.experience import LEVEL_RANK, ZONE_RANK, Experience, Level, Status, Zone
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.retrieval.base import Retriever


def _ancestors(library: Library, exp: Experience) -> list[Experience]:
    """The parent, grandparent... of `exp`, nearest first, up to the first one that is missing or quarantined
    (never shown to a model). Parents are strictly more general, so this ends."""
    chain: list[Experience] = []
    parent_id = exp.parent_id
    while parent_id is not None and (parent := library.find_retrievable([parent_id]).get(parent_id)) is not None:
        chain.append(parent)
        parent_id = parent.parent_id
    return chain


def select_guidance(
    retriever: Retriever,
    library: Library,
    query: str,
    *,
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens,
    per_level: int = 4,
    min_shared: int = 0,
) -> list[Experience]:
    """The experiences to show the actor for `query`, at most `budget_tokens` in all (by `approx_tokens`).

    Up to `per_level` hits are searched in each zone and level; a hit brings its ancestors along (a case its
    pattern and principle, a pattern its principle; read from `library`), since a concrete entry is read best
    with the lesson it illustrates. The budget is
    filled round by round: every zone and level's best hit first (shortest first), then the ancestors those
    hits brought, then every list's second hit, and so on, so that no single zone or level can crowd out the
    others. An entry that does not fit is skipped, not cut. The result reads from general to concrete:
    principles, patterns, cases, golden before warning within a level.

    `min_shared` > 0 keeps only hits that share at least that many content words with the query (ancestors they
    bring are kept with them): BM25 always returns the best it has, and in a small library the best of a zone and
    level is often unrelated, which distracts a small model more than it helps.

    Retrieval counters are not touched; the caller records what it actually showed.
    """
    if budget_tokens <= 0 or per_level <= 0:
        return []
    hits = [retriever.search(query, k=per_level, zone=z, level=lv) for lv in Level for z in Zone]
    if min_shared > 0:
        asked = content_words(query)
        hits = [
            [
                h
                for h in found
                if len(asked & content_words(f"{h.experience.title} {h.experience.content}")) >= min_shared
            ]
            for found in hits
        ]
    queue: list[Experience] = []
    for rank in range(per_level):
        # Within a round every hit is the best its list has left, so the smaller go first: one long worked
        # case must not leave no room for the short lessons of the other zones and levels.
        round_hits = sorted((h[rank].experience for h in hits if rank < len(h)), key=Experience.approx_tokens)
        queue += round_hits
        # A hit at any level brings the more general lessons above it, principles first.
        queue += [a for exp in round_hits for a in reversed(_ancestors(library, exp))]

    chosen: dict[str, Experience] = {}
    used = 0
    for exp in queue:
        if exp.status != Status.ACTIVE:
            continue  # a retriever that does not filter quarantine itself must not leak an entry into a prompt
        cost = exp.approx_tokens()
        if exp.id not in chosen and used + cost <= budget_tokens:
            chosen[exp.id] = exp
            used += cost
    # sorted() is stable: within a level and zone, entries keep the order they were chosen in.
    return sorted(chosen.values(), key=lambda e: (LEVEL_RANK[e.level], ZONE_RANK[e.zone]))


_WORD = re.compile(r"[a-z]{4,}")
# Words of four letters or more that say nothing about what a problem is about.
_STOP = frozenset(
    [
        "that",
        "this",
        "with",
        "from",
        "have",
        "many",
        "much",
        "each",
        "what",
        "will",
        "does",
        "their",
        "they",
        "them",
        "then",
        "than",
        "there",
        "were",
        "into",
        "more",
        "after",
        "before",
        "every",
        "which",
        "when",
        "your",
        "some",
        "other",
        "same",
        "also",
        "only",
        "been",
        "being",
        "would",
        "could",
        "should",
        "about",
        "first",
        "second",
        "after",
        "another",
        "answer",
        "problem",
        "total",
        "number",
        "find",
        "",
    ]
)


def content_words(text: str) -> set[str]:
    """The words that say what a text is about: four letters or more, common function words left out."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}
