"""The overlay of entries changed since the last tantivy commit: searches over it rank as a fully caught-up
index would, on random sequences of adds, edits and deletes, and background commits change no answer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import tantivy_index
from flexlearn.retrieval.tantivy_index import LibraryIndex, field_name
from tests.library.builders import make

WORDS = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(26) for j in range(4)]  # 104 made-up words
FIELDS = [field_name(z, lv) for lv in Level for z in Zone]


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


@pytest.mark.parametrize("seed", range(4))
def test_searches_through_the_overlay_equal_a_fresh_rebuild(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    with Library.open(tmp_path / "lib.db") as lib:
        ids: list[str] = []
        for _ in range(40):
            _write(lib, rng, ids)
        live = LibraryIndex(lib.path)
        live.sync()  # committed here; everything after goes to the overlay
        for step in range(60):
            _write(lib, rng, ids)
            if step % 10:
                continue
            fresh = LibraryIndex(lib.path, directory=tmp_path / f"fresh{step}")
            for _ in range(5):
                query = " ".join(rng.choices(WORDS, k=2))
                for fields in (FIELDS, [rng.choice(FIELDS)]):
                    assert _ranked(live, query, fields) == _ranked(fresh, query, fields)
            fresh.close()
        assert len(live._overlay) > 0 and live._committed < live.revision
        live.close()


def test_a_background_commit_empties_the_overlay_and_changes_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tantivy_index, "COMMIT_EVERY", 5)
    rng = random.Random(7)
    with Library.open(tmp_path / "lib.db") as lib:
        ids: list[str] = []
        index = LibraryIndex(lib.path)
        index.sync()
        for _ in range(12):
            _write(lib, rng, ids)
            index.sync()
        before = {q: _ranked(index, q, FIELDS) for q in WORDS[:20]}
        index.flush()
        assert len(index._overlay) == 0 and index._committed == lib.revision()
        assert {q: _ranked(index, q, FIELDS) for q in WORDS[:20]} == before
        reopened = LibraryIndex(lib.path)  # a new process: the note says the commit is current
        assert {q: _ranked(reopened, q, FIELDS) for q in WORDS[:20]} == before
        reopened.close()
        index.close()


def test_an_entry_in_a_field_the_index_never_had_is_found(tmp_path: Path) -> None:
    with Library.open(tmp_path / "lib.db") as lib:
        lib.add(make("alpha beta", title="alpha"), reason="r")
        index = LibraryIndex(lib.path)
        index.sync()
        exp: Experience = make("gamma delta", title="gamma", zone=Zone.WARNING, level=Level.CASE)
        added = lib.add(exp, reason="r")
        assert _ranked(index, "gamma", [field_name(Zone.WARNING, Level.CASE)]) == [added.id]
        index.close()
