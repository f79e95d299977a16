"""The tantivy retriever: its index follows the library through every change, survives a crash between its
commit and its revision note, rebuilds what it cannot trust, and falls back to FTS5 when it cannot be used."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import tantivy

from flexlearn.experience import Level, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import Bm25Retriever, Retriever, get_retriever, registry, tantivy_index, tantivy_retriever
from flexlearn.retrieval.tantivy_index import META_FILE, index_dir
from flexlearn.retrieval.tantivy_retriever import TantivyRetriever
from tests.library.builders import fill, make


def _titles(retriever: Retriever, query: str, **filters: str) -> list[str]:
    return [h.experience.title for h in retriever.search(query, **filters)]


def _forget_open_indexes(monkeypatch: pytest.MonkeyPatch) -> None:
    # As a fresh process would: no index object cached from before.
    monkeypatch.setattr(tantivy_retriever, "_OPEN", type(tantivy_retriever._OPEN)())


def test_it_conforms_and_ranks_like_bm25_on_a_small_library(lib: Library) -> None:
    retriever = TantivyRetriever(fill(lib))
    assert isinstance(retriever, Retriever)
    query = "What is the area of a triangle with sides 13, 14, 15?"
    assert _titles(retriever, query, k=2) == [h.experience.title for h in Bm25Retriever(lib).search(query, k=2)]
    assert _titles(retriever, "triangles", zone=Zone.WARNING) == ["triangle pitfalls"]  # stemmed, filtered
    assert retriever.search("triangle", zone="golden", level=Level.CASE) == []
    assert retriever.search("") == [] and retriever.search("the of", k=3) == []
    assert retriever.search("triangle", k=0) == []
    target = retriever.search("triangle area")[0].experience
    assert [h.experience.title for h in retriever.neighbours(target, k=5)] == ["triangle pitfalls"]
    with pytest.raises(ValueError):
        retriever.search("triangle", zone="purple")


def test_the_index_follows_adds_edits_and_deletes(lib: Library) -> None:
    retriever = TantivyRetriever(lib)
    assert retriever.search("zebra") == []
    zebra = lib.add(make("zebra stripes confuse predators", title="zebra"), reason="r")
    assert _titles(retriever, "zebra") == ["zebra"]
    lib.edit(zebra.id, reason="r", content="okapi stripes", zone=Zone.WARNING)
    assert retriever.search("predators") == []  # the old content is gone from the index
    assert _titles(retriever, "okapi", zone="warning") == ["zebra"] and retriever.search("okapi", zone="golden") == []
    hits = retriever.search("okapi")
    assert hits[0].experience.content == "okapi stripes"  # the text is read from the library, never the index
    lib.delete(zebra.id, reason="r")
    assert retriever.search("okapi") == []


def test_another_writer_of_the_file_is_seen(lib: Library, tmp_path: Path) -> None:
    retriever = TantivyRetriever(lib)
    retriever.search("anything")
    with Library.open(lib.path) as other:  # as another process would write it
        other.add(make("quokka smiles", title="quokka"), reason="r")
    assert _titles(retriever, "quokka") == ["quokka"]


def test_a_crash_between_index_commit_and_revision_note_is_caught_up_without_duplicates(
    lib: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    TantivyRetriever(fill(lib)).search("triangle")
    meta_path = index_dir(lib.path) / META_FILE
    meta = json.loads(meta_path.read_text())
    lib.add(make("quokka smiles", title="quokka"), reason="r")
    TantivyRetriever(lib).search("quokka")
    # The index has the quokka committed, but its note still says the older revision: replay is idempotent.
    meta_path.write_text(json.dumps(meta))
    _forget_open_indexes(monkeypatch)
    retriever = TantivyRetriever(lib)
    assert _titles(retriever, "quokka") == ["quokka"]
    ids = [h.experience.id for h in retriever.search("triangle quokka modular cooking", k=20)]
    assert len(ids) == len(set(ids)) == 5


@pytest.mark.parametrize("damage", ["delete", "garble", "other-library"])
def test_an_index_it_cannot_trust_is_rebuilt(lib: Library, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    TantivyRetriever(fill(lib)).search("triangle")
    folder = index_dir(lib.path)
    if damage == "delete":
        shutil.rmtree(folder)
    elif damage == "garble":
        for f in folder.iterdir():
            f.write_bytes(b"not an index")
    else:
        # Same revision, different file: the note's stamp no longer matches the event at that revision.
        meta = json.loads((folder / META_FILE).read_text())
        (folder / META_FILE).write_text(json.dumps({**meta, "stamp": 1.0}))
        writer = tantivy.Index(tantivy_index._schema(), path=str(folder)).writer()
        writer.delete_all_documents()
        writer.commit()
        del writer
    _forget_open_indexes(monkeypatch)
    assert _titles(TantivyRetriever(lib), "cooking pasta") == ["cooking"]


def test_a_library_made_again_at_the_same_path_gets_a_fresh_index(tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    with Library.open(path) as lib:
        lib.add(make("zebra stripes", title="zebra"), reason="r")
        assert _titles(TantivyRetriever(lib), "zebra") == ["zebra"]
    for f in tmp_path.glob("lib.db*"):
        if f.is_file():
            f.unlink()
    with Library.open(path) as lib:
        lib.add(make("okapi stripes", title="okapi"), reason="r")
        assert _titles(TantivyRetriever(lib), "stripes") == ["okapi"]


def test_a_locked_index_falls_back_to_fts5_and_a_write_never_needs_the_lock(
    lib: Library, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fill(lib)
    monkeypatch.setattr(tantivy_index, "LOCK_WAIT_S", 0.05)
    index_dir(lib.path).mkdir()
    held = tantivy.Index(tantivy_index._schema(), path=str(index_dir(lib.path))).writer()  # another process
    retriever = TantivyRetriever(lib)
    with caplog.at_level(logging.WARNING):  # the first search must build the index: it cannot
        assert _titles(retriever, "triangle pitfalls", k=1) == ["triangle pitfalls"]
    assert "uses FTS5" in caplog.text
    del held
    retriever.search("triangle")
    # Later writes go to the overlay: found at once, whoever holds the lock.
    held = tantivy.Index(tantivy_index._schema(), path=str(index_dir(lib.path))).writer()
    lib.add(make("quokka smiles", title="quokka"), reason="r")
    assert _titles(retriever, "quokka") == ["quokka"]
    del held
    assert retriever._index is not None and retriever._index.revision == lib.revision()


def test_registry_knows_it_as_the_default_and_falls_back_without_tantivy(
    lib: Library, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert registry.DEFAULT_RETRIEVER == "tantivy" and "tantivy" in registry.retriever_names()
    assert isinstance(get_retriever("tantivy", lib), TantivyRetriever)
    monkeypatch.setitem(sys.modules, "flexlearn.retrieval.tantivy_retriever", None)
    with caplog.at_level(logging.WARNING):
        assert isinstance(get_retriever("tantivy", lib), Bm25Retriever)
    assert "needs the tantivy package" in caplog.text


def test_quarantined_entries_are_found_only_once_approved(lib: Library) -> None:
    retriever = TantivyRetriever(lib)
    held = make("quokka smiles", title="quokka")
    held.status = "quarantined"
    stored = lib.add(held, reason="imported")
    assert retriever.search("quokka") == []
    lib.approve(stored.id)
    assert _titles(retriever, "quokka") == ["quokka"]
