"""Forward guidance: the experiences the actor sees for one problem, chosen over a `Retriever` within a token
budget."""

from __future__ import annotations

import re
from collections.abc import Iterable

from flexlearn.experience import LEVEL_RANK, ZONE_RANK, Experience, Level, Status, Zone
from flexlearn.library.shown import Shown
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.models.base import PromptKind
from flexlearn.retrieval.base import Hit, Retriever, one_view

# How many content words a case must share with the question before a chat actor is shown it (see
# `select_guidance`'s `case_min_shared`). Five keeps the cases that are the same kind of problem (of GSM8k's first
# 100 test questions against run C's 31 training cases: overtime pay with overtime pay, hours walked per week with
# hours walked per week) and drops the 90 best matches that shared two or three words such as "hours" and "week".
CHAT_CASE_MIN_SHARED = 5


def case_gate(kind: PromptKind) -> int:
    """The `case_min_shared` for an actor of this prompt kind: a chat model copies numbers from an unrelated
    case, a base model learns from worked cases alone and is shown every case hit."""
    return CHAT_CASE_MIN_SHARED if kind == PromptKind.CHAT else 0


def select_guidance(
    retriever: Retriever,
    library: Library | Shown,
    query: str,
    *,
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens,
    per_level: int = 4,
    min_shared: int = 0,
    case_min_shared: int = 0,
    category: str = "",
) -> list[Experience]:
    """The experiences to show the actor for `query`, at most `budget_tokens` in all (by `approx_tokens`).

    Up to `per_level` hits are searched in each zone and level; a hit brings its ancestors along (a case its
    pattern and principle, a pattern its principle; read through `library.shown()`, so never a quarantined one),
    since a concrete entry is read best with the lesson it illustrates. The budget is
    filled round by round: every zone and level's best hit first (shortest first), then the ancestors those
    hits brought, then every list's second hit, and so on, so that no single zone or level can crowd out the
    others. An entry that does not fit is skipped, not cut. The result reads from general to concrete:
    principles, patterns, cases, golden before warning within a level.

    `min_shared` > 0 keeps only hits that share at least that many content words with the query (ancestors they
    bring are kept with them): BM25 always returns the best it has, and in a small library the best of a zone and
    level is often unrelated, which distracts a small model more than it helps.

    `case_min_shared` does the same for case hits alone, or half the question's content words if that is fewer
    (a one-line question has few to share). A case is another problem with its own numbers, and a
    chat model shown an unrelated one copies from it (run C of the efficacy benchmark: a "2.5 times" markup and a
    "$200 budget" copied into problems that had neither); a principle or pattern is written to hold for a kind of
    problem, so it is not held to the same bar.

    `category` is the kind of problem the data says the query is (`Problem.category`; "" when it says none).
    When the library holds cases of that kind (entries are titled with their problem's category when learned), the
    cases shown are only those, in both zones, however few words they share: a worked case of the same kind is the
    nearest evidence there is, and one of another kind is what a chat model copies from. When it holds none, cases
    are chosen as without a category.

    Retrieval counters are not touched; the caller records what it actually showed.
    """
    if budget_tokens <= 0 or per_level <= 0:
        return []
    shown = library if isinstance(library, Shown) else library.shown()
    with one_view():
        return _select(retriever, shown, query, budget_tokens, per_level, min_shared, case_min_shared, category)


def _select(
    retriever: Retriever,
    shown: Shown,
    query: str,
    budget_tokens: int,
    per_level: int,
    min_shared: int,
    case_min_shared: int,
    category: str,
) -> list[Experience]:
    hits = [retriever.search(query, k=per_level, zone=z, level=lv) for lv in Level for z in Zone]
    if min_shared > 0 or case_min_shared > 0:
        asked = content_words(query)

        # A short question has few words to share: a case need share no more than half of them.
        case_need = min(case_min_shared, (len(asked) + 1) // 2)

        def related(exp: Experience) -> bool:
            need = max(min_shared, case_need if exp.level == Level.CASE else 0)
            return need <= 0 or len(asked & content_words(f"{exp.title} {exp.content}")) >= need

        hits = [[h for h in found if related(h.experience)] for found in hits]
    if category:
        same = {z: _same_kind(retriever, query, category, z, per_level) for z in Zone}
        if any(same.values()):
            lists = [(lv, z) for lv in Level for z in Zone]
            hits = [same[z] if lv == Level.CASE else found for (lv, z), found in zip(lists, hits, strict=True)]
    ancestors = shown.ancestors_of(h.experience for found in hits for h in found)
    queue: list[Experience] = []
    for rank in range(per_level):
        # Within a round every hit is the best its list has left, so the smaller go first: one long worked
        # case must not leave no room for the short lessons of the other zones and levels.
        round_hits = sorted((h[rank].experience for h in hits if rank < len(h)), key=Experience.approx_tokens)
        queue += round_hits
        # A hit at any level brings the more general lessons above it, principles first.
        queue += [a for exp in round_hits for a in reversed(ancestors[exp.id])]

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


# How many more hits than wanted are searched for cases of one kind: the question's best matches are of its kind
# in a library of a few kinds, but in a large one those may sit further down.
KIND_SEARCH_WIDTH = 4


def of_kind(exp: Experience, category: str) -> bool:
    """Whether `exp` is titled with the kind of problem `category` names (case and spacing aside)."""
    return bool(category.strip()) and " ".join(exp.title.split()).casefold() == " ".join(category.split()).casefold()


def _same_kind(retriever: Retriever, query: str, category: str, zone: Zone, k: int) -> list[Hit]:
    """Up to `k` cases of `zone` titled `category`: the question's best matches of that kind first, then those
    the category's own words find."""
    found = retriever.search(query, k=k * KIND_SEARCH_WIDTH, zone=zone, level=Level.CASE)
    found += retriever.search(category, k=k * KIND_SEARCH_WIDTH, zone=zone, level=Level.CASE)
    return kind_hits(found, category, k)


def kind_hits(found: Iterable[Hit], category: str, k: int) -> list[Hit]:
    """The first `k` distinct hits titled `category`, in the order found."""
    out: dict[str, Hit] = {}
    for hit in found:
        if of_kind(hit.experience, category):
            out.setdefault(hit.experience.id, hit)
    return list(out.values())[:k]


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
