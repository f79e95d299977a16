"""Retrieval over a library on a PostgreSQL server without pgvector (Debian's): the default retriever searches the
tantivy index this host keeps of it in a cache folder (test_server_index.py), "bm25" the server's own lexical
search; it has no vector extension for embeddings, so dense and hybrid answer lexically, and asking for dense
retrieval says once that it is unavailable there, and why. (Dense retrieval on a server that has pgvector:
test_pgvector.py.)"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from flexlearn.library.store import Library
from flexlearn.retrieval import Bm25Retriever, get_retriever, select_guidance
from flexlearn.retrieval.tantivy_retriever import TantivyRetriever
from tests.library.builders import fill
from tests.support import postgres


@pytest.fixture
def server_lib(postgres_server: postgres.PostgresServer) -> Iterator[Library]:
    url = postgres_server.new_database()
    with Library.open(url) as lib:
        yield fill(lib)
    postgres_server.drop_database(url)


def test_the_default_retriever_uses_this_hosts_index_and_bm25_the_servers_own_search(server_lib: Library) -> None:
    retriever = get_retriever("tantivy", server_lib)
    assert isinstance(retriever, TantivyRetriever) and retriever._index is not None
    assert retriever.search("area of a triangle")[0].experience.title == "triangle area"
    own = get_retriever("bm25", server_lib)
    assert isinstance(own, Bm25Retriever)
    assert [h.experience.id for h in own.search("area of a triangle")][:2] == [
        h.experience.id for h in retriever.search("area of a triangle")
    ][:2]
    for searched in (retriever, own):
        guidance = select_guidance(searched, server_lib, "What is the area of a triangle with sides 13, 14, 15?")
        assert {e.title for e in guidance} >= {"triangle area", "triangle pitfalls"}


def test_a_read_only_connection_still_uses_the_index(server_lib: Library) -> None:
    assert server_lib._target is not None
    with Library.open(server_lib._target, read_only=True) as reading:
        retriever = get_retriever("tantivy", reading)
        assert isinstance(retriever, TantivyRetriever) and retriever._index is not None
        assert retriever.search("modular arithmetic")[0].experience.title == "modular"


def test_dense_and_hybrid_fall_back_to_lexical_and_say_so_once(
    postgres_server: postgres.PostgresServer, server_lib: Library, caplog: pytest.LogCaptureFixture
) -> None:
    if postgres.has_pgvector(postgres_server):
        pytest.skip("this machine's PostgreSQL has pgvector, so it cannot show a server without it")
    with caplog.at_level(logging.WARNING, logger="flexlearn.retrieval.registry"):
        dense, hybrid = get_retriever("dense", server_lib), get_retriever("hybrid", server_lib)
        get_retriever("dense", server_lib)
    assert isinstance(dense, TantivyRetriever) and isinstance(hybrid, TantivyRetriever)
    said = [r.getMessage() for r in caplog.records if "dense retrieval is unavailable" in r.getMessage()]
    assert len(said) == 1 and server_lib.location in said[0]
    assert "the server has no pgvector (its 'vector' extension is not installed)" in said[0]
    assert dense.search("modular arithmetic")[0].experience.title == "modular"
