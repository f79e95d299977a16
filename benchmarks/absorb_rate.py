"""Online learning's throughput: outcomes recorded without waiting, then absorbed from the library's queue, against
the fixed-latency scripted server of `throughput.py`. Prints JSON.

    python benchmarks/absorb_rate.py                               # 64 outcomes, latency 0.1 s, batches 1 and 8
    python benchmarks/absorb_rate.py --outcomes 256 --latency 0.5 --batch-sizes 8,32

For each batch size: a fresh library, `--outcomes` arithmetic outcomes queued with `flexlearn.record(...,
wait=False)` (the enqueue's p50 and max in ms: what an agent waits), then one `aabsorb` pass with the model's
concurrency equal to the batch size; reported are the outcomes absorbed per minute, the server's requests, and the
updater's actions. Each outcome costs a distiller call and about one updater call per lesson, one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


async def _one_size(port: int, outcomes: int, batch: int, folder: Path) -> dict[str, Any]:
    from throughput import served_count

    import flexlearn
    from flexlearn.engine import Engine
    from flexlearn.library.store import Library

    enqueue = []
    with Library.open(folder / f"batch{batch}.flexlib") as lib:
        for n in range(outcomes):
            a, b = 10 + n, 3 + n % 7
            start = time.perf_counter()
            await flexlearn.arecord(
                lib, f"What is the sum of {a} and {b}?", f"{a + b}", correct=n % 3 != 0, task="math", wait=False
            )
            enqueue.append(time.perf_counter() - start)
        model = flexlearn.connect(f"openai:scripted@http://127.0.0.1:{port}/v1", concurrency=batch)
        served = served_count(port)
        start = time.perf_counter()
        summary = await Engine.of(None, model, lib).absorb(batch_size=batch)
        seconds = time.perf_counter() - start
        await model.aclose()
        requests = served_count(port) - served
    return {
        "batch_size": batch,
        "enqueue_p50_ms": round(statistics.median(enqueue) * 1000, 2),
        "enqueue_max_ms": round(max(enqueue) * 1000, 2),
        "absorbed": summary.absorbed,
        "failed": summary.failed + summary.retried,
        "seconds": round(seconds, 2),
        "outcomes_per_minute": round(summary.absorbed / seconds * 60, 1),
        "requests": requests,
        "actions": summary.actions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outcomes", type=int, default=64, help="outcomes queued per batch size [default: 64]")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per server reply [default: 0.1]")
    parser.add_argument("--batch-sizes", default="1,8", help="absorber batch sizes [default: 1,8]")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    server = subprocess.Popen(
        [sys.executable, str(HERE / "throughput.py"), "--serve", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                rows.append(asyncio.run(_one_size(port, args.outcomes, batch, Path(tmp))))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"outcomes": args.outcomes, "latency_s": args.latency, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
