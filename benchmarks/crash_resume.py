"""Kill `flex learn` with SIGKILL mid-run at high concurrency, resume it, and compare the library with an
uninterrupted run's. Prints JSON.

    python benchmarks/crash_resume.py --concurrency 64 --problems 128

It starts `throughput.py`'s scripted server (fixed latency, 127.0.0.1), learns the problems once without
interruption, then once per kill point: starts `flex learn`, kills it (SIGKILL, no chance to clean up) once the
library records the given number of problems done (0: once the server has answered a first wave of its
requests, before any problem is done), runs
`flex learn --resume` to the end, and compares every entry (zone, level, text, parent) with the uninterrupted
run's. `identical` must be true and `duplicate_texts` 0 at every kill point: a kill loses and repeats nothing.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))

import throughput  # noqa: E402  (the scripted server and its problems)


def _entries(library: Path) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(library) as db:
        rows = db.execute("SELECT zone, level, content, parent_id FROM experiences ORDER BY zone, level, content")
        return [tuple(row) for row in rows]


def _done(library: Path) -> int:
    if not library.exists():
        return 0
    try:
        with sqlite3.connect(library, timeout=0.05) as db:
            row = db.execute("SELECT count(*) FROM run_problems WHERE status IN ('solved', 'unsolved')").fetchone()
            return int(row[0])
    except sqlite3.OperationalError:  # not created yet, or locked by the writer for a moment
        return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per reply")
    parser.add_argument(
        "--kill-at",
        default="0,1,16,32,64,96,120",
        help="kill once this many problems are recorded done (comma-separated; 0: once the server has answered "
        "`concurrency` of the run's requests, before any problem is done)",
    )
    args = parser.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, str(_HERE / "throughput.py"), "--serve", "--latency", str(args.latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            train = folder / "train.jsonl"
            train.write_text(
                "".join(json.dumps(p) + "\n" for p in throughput.script_problems(args.problems)), encoding="utf-8"
            )

            def command(library: Path, *extra: str) -> list[str]:
                model = f"openai:scripted@http://127.0.0.1:{port}/v1"
                return [
                    sys.executable, "-m", "flexlearn", "learn", "--task", "math", "--train", str(train),
                    "--library", str(library), "--model", model, "--concurrency", str(args.concurrency),
                    "--rollouts", "1", "--rounds", "5", *extra,
                ]  # fmt: skip

            whole = folder / "whole.flexlib"
            start = time.perf_counter()
            subprocess.run(command(whole), check=True, capture_output=True)
            uninterrupted_s = time.perf_counter() - start
            reference = _entries(whole)
            kills = []
            for n, target in enumerate(int(t) for t in args.kill_at.split(",")):
                library = folder / f"killed-{n}.flexlib"
                answered = throughput.served_count(port)
                proc = subprocess.Popen(command(library), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                while proc.poll() is None and (
                    _done(library) < target if target else throughput.served_count(port) < answered + args.concurrency
                ):
                    time.sleep(0.005)
                finished_first = proc.poll() is not None
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                done = _done(library)
                resumed = subprocess.run(command(library, "--resume", "--json"), capture_output=True, text=True)
                summary = json.loads(resumed.stdout)["summary"] if resumed.returncode == 0 else {}
                entries = _entries(library)
                texts = [entry[:3] for entry in entries]
                kills.append(
                    {
                        "kill_when_done": target,
                        "done_when_killed": done,
                        "finished_before_kill": finished_first,
                        "resume_exit_code": resumed.returncode,
                        "skipped_on_resume": summary.get("skipped"),
                        "failed_on_resume": summary.get("failed"),
                        "entries": len(entries),
                        "identical": entries == reference,
                        "duplicate_texts": len(texts) - len(set(texts)),
                    }
                )
            result = {
                "problems": args.problems,
                "concurrency": args.concurrency,
                "latency_s": args.latency,
                "uninterrupted": {"entries": len(reference), "seconds": round(uninterrupted_s, 2)},
                "kills": kills,
                "all_identical": all(k["identical"] for k in kills),
            }
    finally:
        server.terminate()
        server.wait()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
