"""The tantivy index of a library on a PostgreSQL server, kept in a per-user cache folder of the host
(`FLEX_INDEX_DIR` here): it ranks as the index of a file holding the same entries, follows changes made by any
other connection, is never reused for a library dropped and made again at the same URL, stays correct when two
processes share its folder, never names the password, and falls back to the server's own search when it cannot be
used."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import tantivy

from flexlearn.experience import Level, Status, Zone
from flexlearn.library.copy import copy_library
from flexlearn.library.reader import source_of
from flexlearn.library.search import query_tokens
from flexlearn.library.snapshot import FileSource
from flexlearn.library.store import Library
from flexlearn.retrieval import Retriever, tantivy_index, tantivy_retriever
from flexlearn.retrieval.index_home import index_root, server_index_dir
from flexlearn.retrieval.tantivy_index import META_FILE, LibraryIndex
from flexlearn.retrieval.tantivy_retriever import TantivyRetriever
from tests.library.builders import fill, make
from tests.library.test_server_snapshot import remake_schema, schema_url
from tests.support import postgres
from tests.support.bench import benchmark_module

_synthetic = benchmark_module("synthetic")
SPEC = _synthetic.SyntheticSpec(size=300, seed=5)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's cache folder of indexes, and no index object left open from another test (those it opened are
    closed after it)."""
    folder = tmp_path / "index-cache"
    monkeypatch.setenv("FLEX_INDEX_DIR", str(folder))
    monkeypatch.setattr(tantivy_retriever, "_OPEN", type(tantivy_retriever._OPEN)())
    yield folder
    for index in tantivy_retriever._OPEN.values():
        index.close()


def _forget_open_indexes(monkeypatch: pytest.MonkeyPatch) -> None:
    # As a fresh process would: no index object cached from before.
    monkeypatch.setattr(tantivy_retriever, "_OPEN", type(tantivy_retriever._OPEN)())


@pytest.fixture
def server_url(postgres_server: postgres.PostgresServer) -> Iterator[str]:
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def server_lib(server_url: str) -> Iterator[Library]:
    with Library.open(server_url) as lib:
        yield lib


def _titles(retriever: Retriever, query: str, **filters: object) -> list[str]:
    return [h.experience.title for h in retriever.search(query, **filters)]  # type: ignore[arg-type]


def _index(retriever: TantivyRetriever) -> LibraryIndex:
    assert retriever._index is not None, "the retriever fell back to the server's own search"
    return retriever._index


def _ranking(hits: list[tuple[str, float]]) -> tuple[list[tuple[float, str]], float | None]:
    """Hits as (score, id) sorted by score then id, rounded past float noise, less those tied with the last (which
    of a tie at the cut makes the top k depends on insertion order); and the last score."""
    ranked = sorted((round(score, 5), id) for id, score in hits)
    ranked.sort(key=lambda hit: (-hit[0], hit[1]))
    if not ranked:
        return [], None
    last = ranked[-1][0]
    return [hit for hit in ranked if hit[0] != last], last


# -- ranking ----------------------------------------------------------------------------------------------------


@pytest.fixture
def twins(server_url: str, tmp_path: Path) -> Iterator[tuple[Library, Library]]:
    """One synthetic library in a file and, copied by `copy_library`, on the server."""
    with _synthetic.build_library(tmp_path / "lib.flexlib", SPEC) as file_lib, Library.open(server_url) as pg_lib:
        copy_library(file_lib, pg_lib)
        yield file_lib, pg_lib


def test_it_ranks_as_the_files_index_over_the_same_entries(twins: tuple[Library, Library], tmp_path: Path) -> None:
    file_lib, pg_lib = twins
    assert file_lib.path is not None
    # The retrievers, as the registry makes them: a library this small is searched in memory.
    file_r, pg_r = TantivyRetriever(file_lib), TantivyRetriever(pg_lib)
    assert _index(pg_r).directory.parent == index_root()
    # tantivy itself (no memory index), on both.
    file_index = LibraryIndex(FileSource(file_lib.path), directory=tmp_path / "file-index", memory_max=0)
    pg_index = LibraryIndex(source_of(pg_lib), directory=tmp_path / "server-index", memory_max=0)
    file_index.sync()
    pg_index.sync()
    compared = 0
    for category, seed in [(c, s) for c in range(SPEC.categories) for s in (1, 2, 3)]:
        query = _synthetic.category_query(SPEC, category, seed=seed)
        for zone, level in [(None, None), (Zone.GOLDEN, Level.CASE), (Zone.WARNING, Level.PRINCIPLE)]:
            file_hits = [(h.experience.id, h.score) for h in file_r.search(query, k=6, zone=zone, level=level)]
            pg_hits = [(h.experience.id, h.score) for h in pg_r.search(query, k=6, zone=zone, level=level)]
            assert pg_hits == file_hits  # exactly: BM25 over the same entries, ties to the smaller id
            parts = tantivy_retriever._parts(zone, level)
            stems = file_index.stems(query_tokens(query))
            assert _ranking(pg_index.search(stems, parts, 6)) == _ranking(file_index.search(stems, parts, 6))
            compared += len(file_hits)
    assert compared > 50
    file_index.close()
    pg_index.close()


# -- following the library ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("memory", [True, False], ids=["memory-index", "tantivy-and-overlay"])
def test_changes_by_another_connection_are_seen_by_the_next_search(
    server_lib: Library, server_url: str, monkeypatch: pytest.MonkeyPatch, memory: bool
) -> None:
    if not memory:
        monkeypatch.setattr(tantivy_index, "COMMIT_EVERY", 2)  # background commits along the way
        real = tantivy_index.LibraryIndex
        monkeypatch.setattr(tantivy_retriever, "LibraryIndex", lambda source: real(source, memory_max=0))
    retriever = TantivyRetriever(fill(server_lib))
    assert _titles(retriever, "triangle pitfalls", k=1) == ["triangle pitfalls"]
    with Library.open(server_url) as other:  # another process, on this host or another
        zebra = other.add(make("zebra stripes confuse predators", title="zebra"), reason="r")
        assert _titles(retriever, "zebra") == ["zebra"]
        other.edit(zebra.id, reason="r", content="okapi stripes", zone=Zone.WARNING)
        assert retriever.search("predators") == []
        assert (
            _titles(retriever, "okapi", zone="warning") == ["zebra"] and retriever.search("okapi", zone="golden") == []
        )
        other.delete(zebra.id, reason="r")
        assert retriever.search("okapi") == []
        held = other.add(replace(make("quokka smiles", title="quokka"), status=str(Status.QUARANTINED)), reason="r")
        assert retriever.search("quokka") == []
        other.approve(held.id)
        assert _titles(retriever, "quokka") == ["quokka"]
    index = _index(retriever)
    assert index.revision == server_lib.revision()
    assert (index._memory is not None) is memory


def test_a_new_process_catches_up_from_the_cache_folder(
    server_lib: Library, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    _index(TantivyRetriever(fill(server_lib))).flush()
    meta = json.loads(next(cache.glob(f"*/{META_FILE}")).read_text())
    assert meta["revision"] == server_lib.revision() == 4
    server_lib.add(make("quokka smiles", title="quokka"), reason="r")
    _forget_open_indexes(monkeypatch)
    retriever = TantivyRetriever(server_lib)
    assert _titles(retriever, "quokka") == ["quokka"] and _titles(retriever, "cooking pasta", k=1) == ["cooking"]
    assert [p.name for p in cache.iterdir()] == [_index(retriever).directory.name]  # the same folder


def test_a_library_dropped_and_made_again_at_the_same_url_never_reuses_the_old_index(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = schema_url(server_url, "lessons")
    remake_schema(server_url, "lessons")
    with Library.open(url) as lib:
        lib.add(make("zebra stripes", title="zebra"), reason="r")
        old = TantivyRetriever(lib)
        assert _titles(old, "stripes") == ["zebra"]
        _index(old).flush()
        folder = _index(old).directory
        # Dropped and made again, at the same revision: only the event's stamp tells the two apart.
        remake_schema(server_url, "lessons")
        with Library.open(url) as again:
            again.add(make("okapi stripes", title="okapi"), reason="r")
            assert again.revision() == 1
            assert _titles(TantivyRetriever(again), "stripes") == ["okapi"]  # a retriever made now
            _forget_open_indexes(monkeypatch)
            fresh = TantivyRetriever(again)  # a new process: the folder is the same, its note is not trusted
            assert _index(fresh).directory == folder and _titles(fresh, "stripes") == ["okapi"]
        # The retriever made before, whose library's connection now reads the new tables, follows them.
        assert _titles(old, "stripes") == ["okapi"]


def test_a_database_dropped_and_made_again_never_reuses_the_old_index(
    postgres_server: postgres.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres_server.new_database()
    name = url.rsplit("/", 1)[1]
    try:
        with Library.open(url) as lib:
            lib.add(make("zebra stripes", title="zebra"), reason="r")
            assert _titles(TantivyRetriever(lib), "stripes") == ["zebra"]
        postgres_server.drop_database(url)
        with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8')
        with Library.open(url) as lib:
            lib.add(make("okapi stripes", title="okapi"), reason="r")
            assert _titles(TantivyRetriever(lib), "stripes") == ["okapi"]  # in this process
            _forget_open_indexes(monkeypatch)
            assert _titles(TantivyRetriever(lib), "stripes") == ["okapi"]  # in a new one
    finally:
        postgres_server.drop_database(url)


# -- several processes, one folder ------------------------------------------------------------------------------


def test_two_processes_syncing_one_cache_folder_at_once_stay_correct(
    server_lib: Library, server_url: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(40):
        server_lib.add(make(f"base{i} shared lesson text", title=f"base{i}"), reason="r")
    count = 25
    start_at = time.time() + 3.0
    env = {**os.environ, "FLEX_INDEX_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.index_syncer", server_url, name, str(count), str(start_at)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, (out, err[-3000:])
        assert json.loads(out.strip().splitlines()[-1])["searches"] == count
    # One folder for both, and what it holds answers for the whole library: a fresh process (tantivy alone).
    assert len(list(cache.iterdir())) == 1
    _forget_open_indexes(monkeypatch)
    index = LibraryIndex(source_of(server_lib), memory_max=0)
    index.sync()
    hits = index.search(index.stems(["shared", "lesson", "text"]), tantivy_index.PARTS, 1000)
    ids = [id for id, _ in hits]
    assert len(ids) == len(set(ids)) == server_lib.count() == 40 + 2 * count
    for name in ("a", "b"):
        for i in range(count):
            found = [id for id, _ in index.search(index.stems([f"{name}w{i}"]), tantivy_index.PARTS, 5)]
            assert found == [e.id for e in server_lib.list() if e.title == f"{name}w{i}"]
    index.close()


# -- where it lives -----------------------------------------------------------------------------------------------


def test_the_password_never_appears_in_the_cache_folder(server_url: str, cache: Path) -> None:
    secret = "pw-Zq81-never-shown"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE secret_role LOGIN PASSWORD '{secret}'")
        conn.execute("CREATE SCHEMA lessons AUTHORIZATION secret_role")
    parts = urllib.parse.urlsplit(schema_url(server_url, "lessons"))
    url = urllib.parse.urlunsplit(parts._replace(netloc=f"secret_role:{secret}@{parts.hostname}:{parts.port}"))
    try:
        with Library.open(url) as lib:
            retriever = TantivyRetriever(fill(lib))
            assert _titles(retriever, "cooking pasta", k=1) == ["cooking"]
            index = _index(retriever)
            index.flush()
            assert index.directory.parent == cache and secret not in str(index.directory)
            index_dir = index.directory
        for path in cache.rglob("*"):
            assert secret not in str(path)
            if path.is_file():
                assert secret.encode() not in path.read_bytes()
        meta = json.loads((index_dir / META_FILE).read_text())
        assert meta["library"].endswith(f"database {server_url.rsplit('/', 1)[1]} schema lessons")
        # The same library without the password in its URL has the same folder: the password is no part of it.
        without = urllib.parse.urlunsplit(parts._replace(netloc=f"secret_role@{parts.hostname}:{parts.port}"))
        with Library.open(without) as lib:
            assert _index(TantivyRetriever(lib)).directory == index_dir == server_index_dir(meta["library"])
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS lessons CASCADE")
            conn.execute("DROP ROLE IF EXISTS secret_role")


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLEX_INDEX_DIR")
    monkeypatch.delenv("FLEX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert index_root() == tmp_path / "xdg" / "flexlearn" / "index"
    monkeypatch.setenv("FLEX_CACHE_DIR", str(tmp_path / "flex"))
    assert index_root() == tmp_path / "flex" / "index"
    monkeypatch.setenv("FLEX_INDEX_DIR", str(tmp_path / "indexes"))
    assert index_root() == tmp_path / "indexes"
    assert server_index_dir("one").parent == server_index_dir("two").parent == tmp_path / "indexes"
    assert server_index_dir("one") != server_index_dir("two")


# -- when it cannot be used -------------------------------------------------------------------------------------


def test_a_cache_folder_that_cannot_be_written_falls_back_to_the_servers_search(
    server_lib: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FLEX_INDEX_DIR", str(blocker / "index"))
    with caplog.at_level(logging.WARNING):
        retriever = TantivyRetriever(fill(server_lib))
        assert retriever._index is None
        assert _titles(retriever, "triangle pitfalls", k=1) == ["triangle pitfalls"]
    assert "cannot open a search index for" in caplog.text and "the server's own search" in caplog.text


def test_a_locked_index_falls_back_to_the_servers_search_and_a_write_never_needs_the_lock(
    server_lib: Library, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fill(server_lib)
    monkeypatch.setattr(tantivy_index, "LOCK_WAIT_S", 0.05)
    retriever = TantivyRetriever(server_lib)
    folder = _index(retriever).directory
    held = tantivy.Index(tantivy_index._schema(), path=str(folder)).writer()  # another process
    with caplog.at_level(logging.WARNING):  # the first search must build the index: it cannot
        assert _titles(retriever, "triangle pitfalls", k=1) == ["triangle pitfalls"]
    assert "this search uses the server's own search" in caplog.text
    del held
    retriever.search("triangle")
    held = tantivy.Index(tantivy_index._schema(), path=str(folder)).writer()
    server_lib.add(make("quokka smiles", title="quokka"), reason="r")
    assert _titles(retriever, "quokka") == ["quokka"]
    del held
    assert _index(retriever).revision == server_lib.revision()
