"""Retrieval latency at scale: flex-mode guidance (`select_guidance`) and the updater's neighbour search, for
the FTS5 retriever ("bm25") and the tantivy one, on synthetic libraries of 10^3.. entries. Prints JSON.

    python benchmarks/retrieval.py                      # 1k, 10k, 100k
    python benchmarks/retrieval.py --sizes 1000000 --fts-queries 5

Per size: the synthetic library's build time, library open time, the index's build time (first search on a
fresh library) and its open time (a later process, index current), p50/p95 latencies in ms, and the process's
resident memory. FTS5 gets fewer queries at the larger sizes (`--fts-queries`): a query takes seconds there.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from synthetic import SyntheticSpec, build_library, category_query

from flexlearn.library.store import Library
from flexlearn.retrieval import get_retriever, select_guidance, tantivy_retriever


def _rss_mb() -> float:
    # Current resident set, from /proc (Linux); the peak is reported separately.
    with open("/proc/self/statm") as fh:
        return round(int(fh.read().split()[1]) * resource.getpagesize() / 2**20, 1)


def _latency(calls: Sequence[Callable[[], object]], warm_up: int = 3) -> dict[str, float]:
    for call in calls[:warm_up]:  # first touches of the index and the file's pages are not steady state
        call()
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "n": len(times),
        "p50_ms": round(1000 * statistics.median(times), 3),
        "p95_ms": round(1000 * times[min(len(times) - 1, int(0.95 * len(times)))], 3),
    }


def bench_size(folder: Path, size: int, queries: int, fts_queries: int) -> dict[str, object]:
    spec = SyntheticSpec(size)
    path = folder / f"lib-{size}.db"
    start = time.perf_counter()
    build_library(path, spec).close()
    result: dict[str, object] = {"size": size, "library_build_s": round(time.perf_counter() - start, 2)}
    start = time.perf_counter()
    lib = Library.open(path)
    result["library_open_ms"] = round(1000 * (time.perf_counter() - start), 2)
    texts = [category_query(spec, c % spec.categories, seed=c) for c in range(queries)]
    entries = lib.list()[:: max(1, size // queries)][:queries]

    start = time.perf_counter()
    get_retriever("tantivy", lib).search("warm up")
    result["index_build_s"] = round(time.perf_counter() - start, 2)
    tantivy_retriever._OPEN.clear()  # as a later process finds it: built and current
    start = time.perf_counter()
    tantivy = get_retriever("tantivy", lib)
    tantivy.search("warm up")
    result["index_open_ms"] = round(1000 * (time.perf_counter() - start), 2)
    bm25 = get_retriever("bm25", lib)
    for name, retriever, n in (
        ("tantivy", tantivy, queries),
        ("bm25", bm25, fts_queries if size >= 100_000 else queries),
    ):
        result[name] = {
            "guidance": _latency([lambda t=t, r=retriever: select_guidance(r, lib, t) for t in texts[:n]]),
            "neighbours": _latency([lambda e=e, r=retriever: r.neighbours(e, k=5) for e in entries[:n]]),
        }
    result["rss_mb"] = _rss_mb()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    lib.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated library sizes")
    parser.add_argument("--queries", type=int, default=100, help="queries (and neighbour searches) per size")
    parser.add_argument("--fts-queries", type=int, default=10, help="queries for FTS5 at 100,000 entries and up")
    parser.add_argument("--dir", type=Path, help="where to build the libraries (default: a temporary folder)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        results = [bench_size(Path(folder), size, args.queries, args.fts_queries) for size in sizes]
    print(json.dumps({"benchmark": "retrieval", "results": results}, indent=1))


if __name__ == "__main__":
    main()
