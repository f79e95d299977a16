"""Searches between tantivy commits: a small library answered from memory ranks exactly as a freshly built
tantivy index does, on random sequences of adds, edits and deletes; a big one merges tantivy's committed hits with
the overlay of changed entries, which finds every change at once; background commits change no answer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import tantivy_index
from flexlearn.retrieval.tantivy_index import PARTS, LibraryIndex, part
from tests.library.builders import make

WORDS = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(4)]  # 104 made-up words
FIELDS = list(PARTS)


def _text(rng: random.Random) -> str:
    # Each entry leans on a few words of its own, so scores are far apart and a ranking is a fact, not a tie.
    return " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))


def _write(lib: Library, rng: random.Random, ids: list[str]) -> None:
    roll = rng.random()
    if ids and roll < 0.2:
        lib.delete(ids.pop(rng.randrange(len(ids))), reason="r")
    elif ids and roll < 0.4:
        lib.edit(rng.choice(ids), content=_text(rng), reason="r")
    else:
        exp = make(_text(rng), title=rng.choice(WORDS), zone=rng.choice(list(Zone)), level=rng.choice(list(Level)))
        ids.append(lib.add(exp, reason="r").id)


def _ranked(index: LibraryIndex, query: str, fields: list[str]) -> list[str]:
    index.sync()
    return [id for id, _ in index.search(index.stems(query.split()), fields, 5)]


def _same_ranking(a: LibraryIndex, b: LibraryIndex, query: str, fields: list[str]) -> None:
    """The same scores, and the same ids at each score; entries tied at the last score may be cut differently
    (tantivy breaks ties by its own document order)."""
    hits = []
    for index in (a, b):
        index.sync()
        hits.append([(id, round(score, 4)) for id, score in index.search(index.stems(query.split()), fields, 5)])
    assert [s for _, s in hits[0]] == [s for _, s in hits[1]]
    for score in {s for _, s in hits[0][:-1]} - {s for _, s in hits[0][-1:]}:
        assert {id for id, s in hits[0] if s == score} == {id for id, s in hits[1] if s == score}


@pytest.mark.parametrize("seed", range(4))
def test_searches_through_the_overlay_equal_a_fresh_rebuild(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    with Library.open(tmp_path / "lib.db") as lib:
        ids: list[str] = []
        for _ in range(40):
            _write(lib, rng, ids)
        live = LibraryIndex(lib.path)
        live.sync()  # committed here; everything after goes to the overlay and the memory index
        for step in range(60):
            _write(lib, rng, ids)
            if step % 10:
                continue
            fresh = LibraryIndex(lib.path, directory=tmp_path / f"fresh{step}", memory_max=0)  # tantivy alone
            for _ in range(5):
                query = " ".join(rng.choices(WORDS, k=2))
                for fields in (FIELDS, [rng.choice(FIELDS)]):
                    _same_ranking(live, fresh, query, fields)
            fresh.close()
        assert live._memory is not None and live._committed < live.revision
        live.close()


@pytest.mark.parametrize("memory_max", [0, 100])
def test_a_background_commit_empties_the_overlay_and_changes_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_max: int
) -> None:
    monkeypatch.setattr(tantivy_index, "COMMIT_EVERY", 5)
    rng = random.Random(7)

    def answers(index: LibraryIndex) -> dict[str, object]:
        # From memory the order is exact; merged with tantivy's hits (a big library), near-ties may swap as the
        # statistics move from the overlay into the commit, so only what is found is compared.
        return {q: _ranked(index, q, FIELDS) if memory_max else set(_ranked(index, q, FIELDS)) for q in WORDS[:20]}

    with Library.open(tmp_path / "lib.db") as lib:
        ids: list[str] = []
        index = LibraryIndex(lib.path, memory_max=memory_max)
        index.sync()
        for _ in range(12):
            _write(lib, rng, ids)
            index.sync()
        before = answers(index)
        index.flush()
        assert len(index._overlay) == 0 and index._committed == lib.revision()
        assert answers(index) == before
        reopened = LibraryIndex(lib.path, memory_max=memory_max)  # a new process: the note says it is current
        assert answers(reopened) == before
        reopened.close()
        index.close()


@pytest.mark.parametrize("memory_max", [0, 100])
def test_every_change_is_seen_at_once_without_a_commit(tmp_path: Path, memory_max: int) -> None:
    with Library.open(tmp_path / "lib.db") as lib:
        kept = lib.add(make("alpha beta", title="alpha"), reason="r")
        gone = lib.add(make("alpha gamma", title="gamma"), reason="r")
        index = LibraryIndex(lib.path, memory_max=memory_max)
        index.sync()
        committed = index._committed
        exp: Experience = make("delta epsilon", title="delta", zone=Zone.WARNING, level=Level.CASE)
        added = lib.add(exp, reason="r")  # in a field the committed index has no document in
        lib.delete(gone.id, reason="r")
        lib.edit(kept.id, content="zeta eta", reason="r")
        assert _ranked(index, "delta", [part(Zone.WARNING, Level.CASE)]) == [added.id]
        assert _ranked(index, "gamma", FIELDS) == []
        assert _ranked(index, "beta", FIELDS) == [] and _ranked(index, "zeta", FIELDS) == [kept.id]
        assert index._committed == committed  # nothing was committed for it
        index.close()


def test_a_library_that_outgrows_the_memory_index_is_not_read_whole_on_every_change(tmp_path: Path) -> None:
    """Past `memory_max` between two commits, the memory index is dropped once; it was rebuilt from every entry
    (and dropped again) on each later change, because the size it checked was the last commit's: 120-170 ms a
    search instead of 0.4 ms for a library growing past 2,000 entries."""
    with Library.open(tmp_path / "lib.db") as lib:
        for i in range(8):
            lib.add(make(f"alpha {WORDS[i]}", title=WORDS[i]), reason="r")
        index = LibraryIndex(lib.path, memory_max=10)
        index.sync()
        assert index._memory is not None
        whole: list[int] = []
        active_rows = index._reader.active_rows

        def counted(ids=None):  # type: ignore[no-untyped-def]
            if ids is None:
                whole.append(1)
            return active_rows(ids)

        index._reader.active_rows = counted  # type: ignore[method-assign]
        added = []
        for i in range(8, 20):  # past memory_max, fewer than a commit's worth: the overlay holds them
            added.append(lib.add(make(f"alpha {WORDS[i]}", title=WORDS[i]), reason="r").id)
            index.sync()
        assert index._memory is None and index._committed < lib.revision()
        assert len(whole) <= 3  # read whole while under the limit, never again once past it
        assert _ranked(index, WORDS[19], FIELDS) == [added[-1]]
        index.close()
