"""Retrieval from the experience library: the `Retriever` seam, its implementations by name, and the
token-budgeted selection of guidance built on it."""

from flexlearn.retrieval.base import Hit, Retriever
from flexlearn.retrieval.bm25 import Bm25Retriever
from flexlearn.retrieval.guidance import select_guidance
from flexlearn.retrieval.registry import DEFAULT_RETRIEVER, get_retriever, register_retriever, retriever_names

# TantivyRetriever is not imported here: it needs the tantivy package; get_retriever("tantivy") loads it.
__all__ = [
    "DEFAULT_RETRIEVER",
    "Bm25Retriever",
    "Hit",
    "Retriever",
    "get_retriever",
    "register_retriever",
    "retriever_names",
    "select_guidance",
]
