"""Dense and hybrid retrieval with the real embedding model (WordLlama from the `dense` extra, no mocks): meaning
found where BM25 finds nothing, the retriever filters, the vector index beside the library kept current and
rebuilt when it cannot be used, RRF fusion, and the model loaded offline and verified."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flexlearn.errors import ConfigError
from flexlearn.experience import Experience, Level, Provenance, Status, Zone
from flexlearn.library.store import Library
from flexlearn.retrieval import Hit, get_retriever, retriever_names
from flexlearn.retrieval import dense as dense_module
from flexlearn.retrieval import embedder as embedder_module
from flexlearn.retrieval.dense import INDEX_FILE, DenseRetriever, vectors_dir
from flexlearn.retrieval.hybrid import HybridRetriever, reciprocal_rank_fusion

needs_model = pytest.mark.skipif(
    not embedder_module.available(),
    reason="the wordllama package (dense retrieval's model) is not installed: pip install 'flexlearn[dense]'",
)

MARGIN = "Operating margin: divide operating income by revenue to get the operating margin."
# The query shares no searchable word with MARGIN; "share" brings the dividend lesson lexically ("per share").
QUERY = "EBIT as a share of sales"
LESSONS = {
    "operating margin": MARGIN,
    "current ratio": "Current ratio: current assets over current liabilities.",
    "dividend yield": "Dividend yield is the annual dividend per share over the price per share.",
    "cooking": "Cook pasta in salted boiling water.",
    "modular": "Check modular arithmetic: reduce mod 9 before dividing.",
    "triangle": "Triangle area: half the base times the height.",
}


def lesson(
    content: str, *, title: str = "lesson", zone: Zone = Zone.GOLDEN, level: Level = Level.PATTERN
) -> Experience:
    return Experience(zone=zone, level=level, title=title, content=content, provenance=Provenance(task="test"))


@pytest.fixture(autouse=True)
def _closed_indexes() -> Iterator[None]:
    yield
    dense_module.close_all()


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Library]:
    with Library.open(tmp_path / "lib.flexlib") as lib:
        yield lib


def fill(lib: Library) -> dict[str, str]:
    """The lessons, titled as their key; their ids by title."""
    return {title: lib.add(lesson(text, title=title), reason="r").id for title, text in LESSONS.items()}


def ids(hits: list[Hit]) -> list[str]:
    return [h.experience.id for h in hits]


# -- meaning ----------------------------------------------------------------------------------------------------


@needs_model
def test_meaning_is_found_where_the_lexical_retrievers_find_nothing(lib: Library) -> None:
    found = fill(lib)
    for lexical in ("bm25", "tantivy"):
        assert found["operating margin"] not in ids(get_retriever(lexical, lib).search(QUERY, k=10)), lexical
    dense = get_retriever("dense", lib)
    assert isinstance(dense, DenseRetriever)
    hits = dense.search(QUERY, k=3)
    assert ids(hits)[0] == found["operating margin"]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert dense.search("What fraction of turnover is left as profit from operations?", k=1)[0].experience.title == (
        "operating margin"
    )


@needs_model
def test_hybrid_holds_what_each_side_found_ranked_by_rrf(lib: Library) -> None:
    found = fill(lib)
    hybrid = get_retriever("hybrid", lib)
    assert isinstance(hybrid, HybridRetriever)
    lexical, dense = hybrid.lexical.search(QUERY, k=10), hybrid.dense.search(QUERY, k=10)
    hits = hybrid.search(QUERY, k=len(LESSONS))
    # The union of both lists, in the order and with the scores RRF gives them.
    assert set(ids(hits)) == set(ids(lexical)) | set(ids(dense))
    assert ids(hits) == ids(reciprocal_rank_fusion([lexical, dense]))
    assert {found["operating margin"], found["dividend yield"]} <= set(ids(hits[:2]))
    expected = {id: 0.0 for id in ids(hits)}
    for ranking in (lexical, dense):
        for rank, id in enumerate(ids(ranking), start=1):
            expected[id] += 1 / (60 + rank)
    assert [h.score for h in hits] == pytest.approx([expected[id] for id in ids(hits)])


def test_rrf_sums_reciprocal_ranks_and_breaks_ties_by_best_rank_then_first_seen() -> None:
    a, b, c, d = (Experience(Zone.GOLDEN, Level.CASE, x, x, id=x) for x in "abcd")
    fused = reciprocal_rank_fusion([[Hit(a, 9), Hit(b, 8), Hit(c, 7)], [Hit(c, 0.9), Hit(d, 0.8), Hit(a, 0.7)]])
    # a and c: 1/61 + 1/63 each, both best at rank 1, a seen first; b and d: 1/62, both best at rank 2, b first.
    assert [h.experience.id for h in fused] == ["a", "c", "b", "d"]
    assert [h.score for h in fused] == pytest.approx([1 / 61 + 1 / 63] * 2 + [1 / 62] * 2)
    assert reciprocal_rank_fusion([[Hit(a, 1)], []], rrf_k=1)[0].score == pytest.approx(1 / 2)


class Listed:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.asked: list[int] = []

    def search(self, query: str, *, k: int = 10, zone: object = None, level: object = None) -> list[Hit]:
        self.asked.append(k)
        return self.hits[:k]

    def neighbours(self, exp: Experience, *, k: int = 5, zone: object = None, level: object = None) -> list[Hit]:
        return [h for h in self.hits if h.experience.id != exp.id][:k]


def test_hybrid_searches_each_side_deeper_than_k_and_cuts_the_fusion_to_k() -> None:
    entries = [Experience(Zone.GOLDEN, Level.CASE, x, x, id=x) for x in "abcdefgh"]
    lexical, dense = Listed([Hit(e, 1) for e in entries[:6]]), Listed([Hit(e, 1) for e in reversed(entries)])
    hybrid = HybridRetriever(lexical, dense, depth=6)
    hits = hybrid.search("q", k=3)
    assert len(hits) == 3 and lexical.asked == dense.asked == [6]
    # Neighbours fuse both sides' neighbours and never hold the entry itself.
    assert "c" not in ids(hybrid.neighbours(entries[2], k=4)) and len(hybrid.neighbours(entries[2], k=4)) == 4
    assert hybrid.search("q", k=0) == []


# -- the retriever's contract ------------------------------------------------------------------------------------


@needs_model
def test_zone_level_status_and_k_are_honoured(lib: Library) -> None:
    fill(lib)
    placed = {
        (zone, level): lib.add(
            lesson(f"Operating profit over revenue, {zone} {level}", zone=zone, level=level), reason="r"
        ).id
        for zone in Zone
        for level in Level
    }
    held = lib.add(
        Experience(Zone.GOLDEN, Level.PATTERN, "held", MARGIN + " (imported)", status=Status.QUARANTINED), reason="r"
    )
    dense = get_retriever("dense", lib)
    for (zone, level), id in placed.items():
        hits = dense.search(QUERY, k=10, zone=zone, level=level)
        assert all((h.experience.zone, h.experience.level) == (zone, level) for h in hits)
        assert id in ids(hits)
    assert all(h.experience.zone == Zone.WARNING for h in dense.search(QUERY, k=20, zone="warning"))
    assert all(h.experience.level == Level.CASE for h in dense.search(QUERY, k=20, level=Level.CASE))
    assert len(dense.search(QUERY, k=2)) == 2
    assert held.id not in ids(dense.search(MARGIN, k=50))
    lib.approve(held.id)
    assert ids(dense.search(MARGIN + " (imported)", k=1)) == [held.id]
    assert dense.search(QUERY, k=0) == [] and dense.search("the and of", k=5) == [] and dense.search("", k=5) == []
    with pytest.raises(ValueError):
        dense.search(QUERY, zone="nowhere")


@needs_model
def test_neighbours_are_the_nearest_others(lib: Library) -> None:
    found = fill(lib)
    gross = lib.add(lesson("Gross margin: gross profit divided by revenue.", title="gross margin"), reason="r")
    dense = get_retriever("dense", lib)
    near = dense.neighbours(gross, k=3)
    assert gross.id not in ids(near) and len(near) == 3
    assert ids(near)[0] == found["operating margin"]
    unsaved = lesson("Gross margin: gross profit divided by revenue.")  # not stored: no id to leave out
    assert ids(dense.neighbours(unsaved, k=1)) == [gross.id]


# -- the index beside the library --------------------------------------------------------------------------------


@needs_model
def test_the_index_follows_adds_merges_edits_and_deletes(lib: Library) -> None:
    found = fill(lib)
    dense = DenseRetriever(lib)
    index = dense.index
    assert ids(dense.search(QUERY, k=1)) == [found["operating margin"]] and len(index) == len(LESSONS)
    leaves = "How do leaves make food from light?"
    plant = lib.add(lesson("Photosynthesis: plants turn sunlight, water and carbon dioxide into sugar."), reason="r")
    assert ids(dense.search(leaves, k=1)) == [plant.id] and len(index) == len(LESSONS) + 1
    # A merge rewrites the cooking lesson into another subject: found for it, no longer for pasta.
    cooking = lib.get(found["cooking"])
    assert ids(dense.search("boiling pasta", k=1)) == [cooking.id]
    lib.merge(cooking.id, content="Tides follow the moon's gravity.", examples=None, candidate=cooking, reason="r")
    assert ids(dense.search("ocean tides pulled by the moon", k=1)) == [cooking.id]
    assert ids(dense.search("boiling pasta", k=1)) != [cooking.id]
    lib.edit(plant.id, reason="r", zone=Zone.WARNING)
    assert plant.id not in ids(dense.search(leaves, k=10, zone=Zone.GOLDEN))
    assert ids(dense.search(leaves, k=1, zone=Zone.WARNING)) == [plant.id]
    lib.delete(found["operating margin"], reason="r")
    assert found["operating margin"] not in ids(dense.search(QUERY, k=10))
    assert len(index) == len(LESSONS) and index.revision == lib.revision()
    # Another connection's writes (another process) are seen too.
    with Library.open(lib.path) as other:
        late = other.add(lesson("Volcanoes erupt when magma pressure builds up."), reason="r")
    assert ids(dense.search("molten rock bursting from a mountain", k=1)) == [late.id]


def _fresh_process() -> None:
    dense_module.close_all()


@needs_model
def test_a_later_process_catches_the_saved_index_up_from_the_log(lib: Library) -> None:
    found = fill(lib)
    dense = DenseRetriever(lib)
    dense.search(QUERY)
    assert dense.index.rebuilt and (vectors_dir(lib.path) / INDEX_FILE).is_file()
    saved_at = lib.revision()
    plant = lib.add(lesson("Photosynthesis: plants turn sunlight, water and carbon dioxide into sugar."), reason="r")
    lib.delete(found["cooking"], reason="r")
    _fresh_process()
    later = DenseRetriever(lib)
    assert ids(later.search("How do leaves make food from light?", k=1)) == [plant.id]
    assert not later.index.rebuilt and later.index.revision == lib.revision() > saved_at
    assert found["cooking"] not in ids(later.search("boiling pasta", k=10))
    assert len(later.index) == len(LESSONS)
    # What it caught up was written at once: the next process has nothing to replay.
    with np.load(vectors_dir(lib.path) / INDEX_FILE) as data:
        assert json.loads(str(data["meta"]))["revision"] == lib.revision()
        assert sorted(data["ids"].tolist()) == sorted(e.id for e in lib.list())


def _rewrite_meta(path: Path, **changes: object) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta.update(changes)
    with path.open("wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)


@needs_model
@pytest.mark.parametrize("damage", ["garbage", "truncated", "other model", "other format", "ahead of the library"])
def test_an_unusable_index_is_rebuilt(lib: Library, damage: str) -> None:
    found = fill(lib)
    DenseRetriever(lib).search(QUERY)
    path = vectors_dir(lib.path) / INDEX_FILE
    if damage == "garbage":
        path.write_bytes(b"not an index at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "other model":
        _rewrite_meta(path, model="another-model")
    elif damage == "other format":
        _rewrite_meta(path, format=0)
    else:
        _rewrite_meta(path, revision=lib.revision() + 5)
    _fresh_process()
    dense = DenseRetriever(lib)
    assert ids(dense.search(QUERY, k=1)) == [found["operating margin"]]
    assert dense.index.rebuilt and len(dense.index) == len(LESSONS)
    with np.load(path) as data:  # written again, whole
        assert json.loads(str(data["meta"]))["revision"] == lib.revision()


@needs_model
def test_an_index_left_by_another_library_at_the_same_path_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "lib.flexlib"
    with Library.open(path) as first:
        fill(first)
        DenseRetriever(first).search(QUERY)
    _fresh_process()
    path.unlink()
    with Library.open(path) as second:
        # As many changes as the first had, so the revision alone cannot tell the two apart.
        for n in range(len(LESSONS)):
            second.add(lesson(f"Photosynthesis note {n}: plants turn sunlight into sugar."), reason="r")
        dense = DenseRetriever(second)
        hits = dense.search(QUERY, k=10)
        assert dense.index.rebuilt
        assert {h.experience.id for h in hits} <= {e.id for e in second.list()} and len(hits) == len(LESSONS)


# -- the model ----------------------------------------------------------------------------------------------------


@needs_model
def test_the_model_loads_offline_from_the_package_files(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedder tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    model = embedder_module.Embedder()
    vectors = model.embed(["operating margin", "", "EBIT as a share of sales"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 256)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 0.0, 1.0], abs=1e-5)
    assert model.embed([]).shape == (0, 256)
    # Batches and single texts agree.
    assert np.allclose(model.embed(["operating margin"])[0], vectors[0], atol=1e-6)


@needs_model
def test_the_packages_own_code_is_never_imported() -> None:
    code = (
        "import sys; from flexlearn.retrieval.embedder import get_embedder; get_embedder().embed(['x']); "
        "assert 'wordllama' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@needs_model
def test_a_weights_file_that_does_not_match_the_pinned_digest_is_refused(tmp_path: Path) -> None:
    source = embedder_module._source()
    tampered = tmp_path / "weights.safetensors"
    shutil.copyfile(source.weights, tampered)
    data = bytearray(tampered.read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(embedder_module.EmbedderUnavailableError, match="does not match the pinned release"):
        embedder_module.Embedder(embedder_module._Source(tampered, source.tokenizer))
    with pytest.raises(ConfigError, match="cannot read"):
        embedder_module.Embedder(embedder_module._Source(tmp_path / "missing", source.tokenizer))


def test_without_the_package_dense_and_hybrid_are_a_config_error_naming_the_extra(
    lib: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"dense", "hybrid"} <= set(retriever_names())
    real = embedder_module.importlib.metadata.distribution

    def distribution(name: str) -> object:
        if name == embedder_module.DISTRIBUTION:
            raise embedder_module.importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(embedder_module.importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(embedder_module, "_EMBEDDER", None)
    assert not embedder_module.available()
    for name in ("dense", "hybrid"):
        with pytest.raises(ConfigError, match=r"pip install 'flexlearn\[dense\]'"):
            get_retriever(name, lib)
