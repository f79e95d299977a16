"""Learning throughput with `--executor ray` against in-process, in one run on this machine. Prints JSON.

    python benchmarks/ray_throughput.py --concurrency 64 --problems 128 --latency 0.2 --pairs 3

It starts `throughput.py`'s scripted server (fixed latency, 127.0.0.1, its own process) and a local Ray instance
with this machine's CPUs (or connects to `--ray-address`) once, so the cluster's start is not counted. Then, in
`--pairs` pairs, it learns the problems into a fresh library in-process and with the ray executor (the order
alternating from pair to pair), each with `flexlearn.alearn` and one model for every role, as `throughput.py`
does. Each run reports the requests the server answered, the learning seconds (`LearnSummary.seconds`: from the
run's start, once the executor is open), problems and requests a second over them (and requests over the bound,
concurrency / latency), the wall seconds of the whole call (for Ray: starting its actors included), the most
requests the server had in flight at once (`--concurrency` bounds it either way) and the entries duplicated
(must be 0).

A Ray run adds its chains, its workers and the overhead a chain: the round trip of its Ray task less the chain's
own time in the worker (median, mean, 90th percentile), which is scheduling, moving the problem there and the
trajectory and candidates back, and waiting for a busy event loop at either end. `idle_round_trip_ms`, measured
alone before the runs, is Ray's own round trip for a task that returns at once.

`ratio` is the Ray run's learning throughput (problems a second of learning) over the in-process run's of the
same pair, `requests_ratio` the same for requests a second (the updater's re-checks vary with timing, so the
requests do too) and `wall_ratio` for the whole call, Ray's actors starting included; the summary gives their
medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import throughput  # noqa: E402  (the scripted server and its problems)


class _Overhead(logging.Handler):
    """Catches the ray executor's closing line (its chains, workers and summed overhead)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "overheads_s"):
            self.last = {"overheads_s": record.overheads_s, "workers": record.workers}


async def _learn(port: int, train: Path, library: Path, concurrency: int, executor: str) -> dict[str, Any]:
    import flexlearn
    from flexlearn.library.store import Library

    model = flexlearn.connect(f"openai:scripted@http://127.0.0.1:{port}/v1", concurrency=concurrency)
    with Library.open(library) as lib:
        start = time.perf_counter()
        summary = await flexlearn.alearn(
            train,
            task="math",
            agents=model,
            library=lib,
            concurrency=concurrency,
            rollouts=1,
            rounds=5,
            executor=executor,
        )
        wall = time.perf_counter() - start
    await model.aclose()
    return {"wall": wall, "seconds": summary.seconds, "solved": summary.solved, "failed": summary.failed}


async def _idle_round_trip(times: int = 20, size: int = 20_000) -> float:
    """Ray's own cost of one task on this machine, with nothing else running: the mean round trip in ms of an async
    actor's method that returns at once, `size` bytes each way (about a problem's reply: its trajectory and
    candidates)."""
    import ray

    @ray.remote(num_cpus=1)
    class Echo:
        async def echo(self, payload: bytes) -> bytes:
            return payload

    actor = Echo.remote()
    payload = b"x" * size
    await actor.echo.remote(payload)
    started = time.perf_counter()
    for _ in range(times):
        await actor.echo.remote(payload)
    ray.kill(actor)
    return round(1000 * (time.perf_counter() - started) / times, 2)


def run(
    port: int, folder: Path, n: int, problems: int, latency: float, concurrency: int, executor: str, caught: _Overhead
) -> dict[str, Any]:
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps(p) + "\n" for p in throughput.script_problems(problems)))
    library = folder / f"{executor}-{n}.flexlib"
    before = throughput.served_count(port)
    throughput.peak_in_flight(port)  # resets the peak
    caught.last = {}
    learned = asyncio.run(_learn(port, train, library, concurrency, executor))
    requests = throughput.served_count(port) - before
    out: dict[str, Any] = {
        "executor": executor,
        "requests": requests,
        "seconds": round(learned["seconds"], 2),
        "problems_per_s": round(problems / learned["seconds"], 2),
        "requests_per_s": round(requests / learned["seconds"], 1),
        "fraction_of_bound": round(requests / learned["seconds"] / (concurrency / latency), 3),
        "wall_seconds": round(learned["wall"], 2),
        "wall_requests_per_s": round(requests / learned["wall"], 1),
        "peak_in_flight": throughput.peak_in_flight(port),
        "duplicates": throughput._duplicates(library),
        "solved": learned["solved"],
        "failed": learned["failed"],
    }
    if caught.last:
        overheads = sorted(caught.last["overheads_s"])
        out.update(
            chains=len(overheads),
            workers=caught.last["workers"],
            overhead_ms_per_chain=round(1000 * statistics.median(overheads), 1),
            overhead_ms_mean=round(1000 * statistics.fmean(overheads), 1),
            overhead_ms_p90=round(1000 * overheads[int(0.9 * (len(overheads) - 1))], 1),
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per reply")
    parser.add_argument("--pairs", type=int, default=3, help="in-process and Ray runs, alternating")
    parser.add_argument("--ray-address", default=None, help="a running cluster (default: a local instance)")
    args = parser.parse_args(argv)

    import ray

    started = time.perf_counter()
    ray.init(address=args.ray_address or "local", include_dashboard=False, logging_level=logging.WARNING)
    ray_start = time.perf_counter() - started
    caught = _Overhead()
    logger = logging.getLogger("flexlearn.loop.ray_executor")
    logger.addHandler(caught)
    logger.setLevel(logging.INFO)
    server = subprocess.Popen(
        [sys.executable, str(_HERE / "throughput.py"), "--serve", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    runs: list[dict[str, Any]] = []
    idle = asyncio.run(_idle_round_trip())
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as folder:
            for n in range(args.pairs):
                order = ("inprocess", "ray") if n % 2 == 0 else ("ray", "inprocess")
                pair = {
                    executor: run(
                        port, Path(folder), n, args.problems, args.latency, args.concurrency, executor, caught
                    )
                    for executor in order
                }
                pair["ray"]["ratio"] = round(pair["ray"]["problems_per_s"] / pair["inprocess"]["problems_per_s"], 3)
                pair["ray"]["requests_ratio"] = round(
                    pair["ray"]["requests_per_s"] / pair["inprocess"]["requests_per_s"], 3
                )
                pair["ray"]["wall_ratio"] = round(pair["inprocess"]["wall_seconds"] / pair["ray"]["wall_seconds"], 3)
                runs += [pair[e] for e in order]
    finally:
        server.terminate()
        server.wait()
        ray.shutdown()
    rays = [r for r in runs if r["executor"] == "ray"]
    summary = {
        "ratio_median": statistics.median(r["ratio"] for r in rays),
        "ratios": [r["ratio"] for r in rays],
        "requests_ratio_median": statistics.median(r["requests_ratio"] for r in rays),
        "wall_ratio_median": statistics.median(r["wall_ratio"] for r in rays),
        "overhead_ms_per_chain_median": statistics.median(r["overhead_ms_per_chain"] for r in rays),
        "idle_round_trip_ms": idle,
        "ray_start_s": round(ray_start, 1),
        "cpus": os.cpu_count(),
        "ray_version": ray.__version__,
    }
    result = {
        "problems": args.problems,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "summary": summary,
        "runs": runs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
