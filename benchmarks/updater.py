"""Prompt tokens per updater decision as the library grows: the updater reads a candidate and its k neighbours
(never the whole library), so its prompt should stay flat from 10 to 10^5 entries. Prints JSON.

    python benchmarks/updater.py --sizes 10,100,1000,10000,100000

Candidates are library entries with their text changed a little (so they are not exact duplicates), their
neighbours found by the named retriever, and the prompt `decide` sends captured by a `FunctionModel` that
replies "add". Tokens are estimated at 4 characters each over the chat messages, as `FunctionModel` meters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from synthetic import SyntheticSpec, build_library

from flexlearn.agents.updater import decide
from flexlearn.models.base import Prompt
from flexlearn.models.function import FunctionModel
from flexlearn.retrieval import get_retriever

K = 5  # LearnConfig.neighbours


def _tokens(prompt: Prompt) -> int:
    return sum(len(m.content) for m in prompt.messages) // 4


async def bench_size(folder: Path, size: int, decisions: int, retriever_name: str) -> dict[str, object]:
    lib = build_library(folder / f"lib-{size}.db", SyntheticSpec(size))
    retriever = get_retriever(retriever_name, lib)
    model = FunctionModel(lambda prompt, role, schema: '{"action": "add", "reason": "new"}')
    search_s = []
    for exp in lib.list()[:: max(1, size // decisions)][:decisions]:
        candidate = replace(exp, id="", content=exp.content + " again")
        start = time.perf_counter()
        neighbours = [h.experience for h in retriever.neighbours(candidate, k=K)]
        search_s.append(time.perf_counter() - start)
        await decide(model, candidate, neighbours)
    tokens = [_tokens(call.prompt) for call in model.calls]
    lib.close()
    return {
        "size": size,
        "decisions": len(tokens),
        "prompt_tokens_mean": round(statistics.mean(tokens), 1),
        "prompt_tokens_max": max(tokens),
        "neighbour_search_p50_ms": round(1000 * statistics.median(search_s), 3),
    }


async def run(sizes: list[int], decisions: int, retriever_name: str) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as folder:
        return [await bench_size(Path(folder), size, decisions, retriever_name) for size in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000,10000,100000", help="comma-separated library sizes")
    parser.add_argument("--decisions", type=int, default=50, help="updater decisions per size")
    parser.add_argument("--retriever", default="tantivy", help="how neighbours are found")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = asyncio.run(run(sizes, args.decisions, args.retriever))
    print(json.dumps({"benchmark": "updater", "retriever": args.retriever, "k": K, "results": results}, indent=1))


if __name__ == "__main__":
    main()
