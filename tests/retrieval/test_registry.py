"""Retrievers by name."""

from __future__ import annotations

import pytest

from flexlearn.errors import ConfigError
from flexlearn.library.store import Library
from flexlearn.retrieval import Bm25Retriever, Retriever, get_retriever, register_retriever, registry, retriever_names


def test_bm25_is_known_and_over_the_given_library(lib: Library) -> None:
    assert "bm25" in retriever_names()
    retriever = get_retriever("bm25", lib)
    assert isinstance(retriever, Bm25Retriever) and retriever.library is lib


def test_an_unknown_name_is_a_config_error_that_lists_the_known_ones(lib: Library) -> None:
    with pytest.raises(ConfigError, match=r"unknown retriever 'nonesuch'; choose from .*bm25"):
        get_retriever("nonesuch", lib)


def test_a_registered_retriever_is_found_by_name(lib: Library, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))  # leave the real registry alone

    class Plain(Bm25Retriever):
        pass

    register_retriever("plain", Plain)
    assert {"bm25", "plain"} <= set(retriever_names())
    retriever: Retriever = get_retriever("plain", lib)
    assert isinstance(retriever, Plain)
