"""One of several processes that learn into one library on a PostgreSQL server and search it through the tantivy
index in one shared cache folder (`FLEX_INDEX_DIR`), for tests/retrieval/test_server_index.py.

    python -m tests.support.index_syncer URL NAME COUNT START_AT

From START_AT (a time.time()), COUNT times: add an entry with a word of its own (`<NAME>w<i>`), then search for
that word; the entry must come back, alone, at once. The index runs on tantivy and its overlay (no memory index)
and commits every 3 changes, so the processes keep taking tantivy's writer lock from each other. Prints one JSON
line: how many searches were answered by the index and how many fell back to the server's search. Exits 1 at the
first wrong answer.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time

from flexlearn.library.store import Library
from flexlearn.retrieval import tantivy_index, tantivy_retriever
from flexlearn.retrieval.tantivy_retriever import TantivyRetriever
from tests.library.builders import make


def main(url: str, name: str, count: int, start_at: float) -> int:
    tantivy_index.COMMIT_EVERY = 3
    tantivy_retriever.LibraryIndex = functools.partial(  # type: ignore[misc]
        tantivy_index.LibraryIndex, memory_max=0
    )
    fell_back = 0
    with Library.open(url, create=False) as lib:
        while time.time() < start_at:
            time.sleep(0.01)
        retriever = TantivyRetriever(lib)
        for i in range(count):
            word = f"{name}w{i}"
            added = lib.add(make(f"{word} shared lesson text", title=word), reason="r")
            fell_back += retriever._synced() is None
            found = [h.experience.id for h in retriever.search(word, k=5)]
            if found != [added.id]:
                print(json.dumps({"error": f"{word}: found {found}, expected [{added.id!r}]"}), flush=True)
                return 1
        index = retriever._index
        if index is not None:
            with contextlib.suppress(tantivy_index.IndexBusyError):  # the other process is committing: it will do
                index.flush()
    print(json.dumps({"searches": count, "fell_back": fell_back}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
