"""Synthetic experience libraries for retrieval tests and benchmarks: varied, labelled, and quick to build at a
million entries.

Text is drawn from a made-up vocabulary with Zipfian word frequencies (the commonest word is in about half the
entries, as in real libraries once stop words are gone), and every entry belongs to a category whose topic
words it uses. A query written for a category (`category_query`) has about 26 searchable tokens, most of them
common words, like a rendered problem; the entries of its own category are the right answers, which makes the
category a label to test ranking quality against.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flexlearn.experience import LEVEL_RANK, Level, Zone
from flexlearn.library.store import Library

_CONSONANTS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"
_GENERAL_WORDS = 30_000
# Zipf-Mandelbrot offset and exponent: tuned so the commonest word is in about half the entries.
_ZIPF_OFFSET = 8.0
_ZIPF_EXPONENT = 1.05
_TOPIC_WORDS = 8  # per category
_CATEGORY_SIZE = 100  # entries per category, on average
_ZONE_P = {Zone.GOLDEN: 0.7, Zone.WARNING: 0.3}
_LEVEL_P = {Level.PRINCIPLE: 0.1, Level.PATTERN: 0.3, Level.CASE: 0.6}


def _word(i: int, tag: str) -> str:
    # Consonant-vowel syllables spell `i`; the tag keeps topic words apart from general ones. Letters only,
    # so every word is one token to both FTS5 and tantivy.
    syllables = []
    while True:
        i, r = divmod(i, len(_CONSONANTS) * len(_VOWELS))
        syllables.append(_CONSONANTS[r // len(_VOWELS)] + _VOWELS[r % len(_VOWELS)])
        if i == 0:
            break
    return tag + "".join(syllables)


@dataclass
class SyntheticSpec:
    """What to build: `size` entries in `size / 100` categories, from `seed`."""

    size: int
    seed: int = 0

    @property
    def categories(self) -> int:
        return max(2, self.size // _CATEGORY_SIZE)


class _Words:
    """The vocabulary and its samplers, seeded."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.rng = np.random.default_rng(spec.seed)
        self.general = np.array([_word(i, "w") for i in range(_GENERAL_WORDS)], dtype=object)
        weights = 1.0 / (np.arange(_GENERAL_WORDS) + _ZIPF_OFFSET) ** _ZIPF_EXPONENT
        self.cdf = np.cumsum(weights / weights.sum())
        # Half of a category's topic words are its own, half are shared with other categories, so topics overlap.
        shared = np.array([_word(i, "q") for i in range(max(16, spec.categories // 4))], dtype=object)
        self.topics = [
            [*(_word(c * 4 + j, "t") for j in range(_TOPIC_WORDS // 2)), *self.rng.choice(shared, _TOPIC_WORDS // 2)]
            for c in range(spec.categories)
        ]

    def general_words(self, n: int) -> list[str]:
        return list(self.general[np.searchsorted(self.cdf, self.rng.random(n))])

    def text(self, category: int, topic: int, general: int) -> str:
        # At least half the topic words are the category's own, so every entry says what it is about.
        own = self.topics[category][: _TOPIC_WORDS // 2]
        topic_words = [*self.rng.choice(own, (topic + 1) // 2), *self.rng.choice(self.topics[category], topic // 2)]
        words = [*topic_words, *self.general_words(general)]
        self.rng.shuffle(words)
        return " ".join(words)


def category_query(spec: SyntheticSpec, category: int, *, seed: int = 1) -> str:
    """A problem-like query about `category`: its own topic words and one it shares, among many common words."""
    words = _Words(spec)
    words.rng = np.random.default_rng([spec.seed, category, seed])
    topic = words.topics[category]
    query = [*topic[: _TOPIC_WORDS // 2], topic[-1], *words.general_words(24)]
    words.rng.shuffle(query)
    return " ".join(query).capitalize() + "."


def build_library(path: str | Path, spec: SyntheticSpec) -> Library:
    """Create a library of `spec.size` synthetic entries at `path` (which must not exist) and open it.

    Rows go in by SQL in one transaction, each with its `import` event, as `Library.add` would log them; that
    is what makes a million entries take minutes rather than an hour. Each entry's category is the prefix of
    its id (`c17-...`), and cases and patterns have a parent one level up in their category where there is one.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    Library.open(path).close()  # the schema
    words = _Words(spec)
    rng = words.rng
    zones = rng.choice(list(_ZONE_P), spec.size, p=list(_ZONE_P.values()))
    levels = rng.choice(list(_LEVEL_P), spec.size, p=list(_LEVEL_P.values()))
    categories = rng.integers(0, spec.categories, spec.size)
    # Most general first, so that a parent is always written before its children.
    order = np.lexsort((categories, [LEVEL_RANK[Level(lv)] for lv in levels]))
    last_of: dict[tuple[int, str], str] = {}
    now = time.time()
    rows, events = [], []
    for n, i in enumerate(order):
        cat, level, zone = int(categories[i]), Level(levels[i]), Zone(zones[i])
        id = f"c{cat}-{n}"
        parent_level = {Level.CASE: Level.PATTERN, Level.PATTERN: Level.PRINCIPLE}.get(level)
        parent = last_of.get((cat, parent_level)) if parent_level else None
        last_of[(cat, level)] = id
        examples = [words.text(cat, 2, 10) for _ in range(int(rng.integers(0, 3)))]
        provenance = json.dumps({"task": "synthetic", "problem_ids": [], "source": "manual"})
        title = words.text(cat, 3, 2).capitalize()
        rows.append(
            (id, str(zone), str(level), title, words.text(cat, 8, 30), json.dumps(examples), provenance, parent, now)
        )
        events.append((id, now))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO experiences(id, zone, level, title, content, examples, provenance, parent_id, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?9)",
            rows,
        )
        conn.executemany(
            "INSERT INTO events(action, experience_id, reason, run_id, created_at)"
            " VALUES ('import', ?, 'synthetic', '', ?)",
            events,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Library.open(path)


def category_of(experience_id: str) -> int:
    """The category a synthetic entry was written for, from its id."""
    return int(experience_id.split("-")[0][1:])
