"""MCP round trips at scale: `flex mcp` over stdio on a synthetic library, driven by the MCP SDK's own client, as
a desktop client or coding assistant would call it. Prints JSON.

    python benchmarks/mcp_latency.py                    # 100k entries, 200 calls of each tool
    python benchmarks/mcp_latency.py --size 10000 --calls 50

Reported per tool (guidance, search): p50, p95, mean and max round trip in ms, from the client's call to its
parsed result, after `--warm-up` calls (the first ones open the index and touch the file's pages). The library is
built once into `--work` and reused. The goal for guidance at 100k entries is a p50 of 50 ms or less on a 2-core
machine; the machine's load at the time is reported with the figures (compare runs on a quiet machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from synthetic import SyntheticSpec, build_library, category_query

HERE = Path(__file__).parent


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "calls": len(ordered),
    }


async def _measure(library: Path, queries: list[str], warm_up: int) -> dict[str, Any]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "flexlearn", "mcp", "--library", str(library)],
        env={**os.environ, "NO_COLOR": "1"},
    )
    started = time.perf_counter()
    out: dict[str, Any] = {}
    async with Client(stdio_client(params)) as client:
        out["server_start_s"] = round(time.perf_counter() - started, 2)
        for tool, arguments in (
            ("guidance", lambda q: {"question": q}),
            ("search", lambda q: {"query": q, "k": 5}),
        ):
            for query in queries[:warm_up]:
                await client.call_tool(tool, arguments(query))
            times = []
            for query in queries:
                start = time.perf_counter()
                result = await client.call_tool(tool, arguments(query))
                times.append(time.perf_counter() - start)
                if result.is_error:
                    raise SystemExit(f"{tool} failed: {result.content}")
            out[tool] = _summary(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="entries [default: %(default)s]")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per tool [default: %(default)s]")
    parser.add_argument("--warm-up", type=int, default=10, help="untimed calls first [default: %(default)s]")
    parser.add_argument("--work", type=Path, default=HERE / ".mcp-latency", help="where the library is kept")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec(size=args.size)
    library = args.work / f"synthetic-{args.size}.flexlib"
    built_s = None
    if not library.exists():
        started = time.perf_counter()
        build_library(library, spec).close()
        built_s = round(time.perf_counter() - started, 1)
    queries = [category_query(spec, i % spec.categories, seed=i) for i in range(args.calls)]
    figures = asyncio.run(_measure(library, queries, args.warm_up))
    print(
        json.dumps(
            {
                "size": args.size,
                "library_build_s": built_s,
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
                **figures,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
