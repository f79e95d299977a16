"""Learning throughput against a fixed-latency OpenAI-compatible server, as a fraction of the bound. Prints JSON.

    python benchmarks/throughput.py --concurrency 1,8,32,64 --problems 128 --latency 0.2

The benchmark starts its own server in a subprocess (stdlib asyncio, 127.0.0.1, no network): every reply leaves
`--latency` seconds after its request arrived (the server's own work included) and plays the four FLEX roles from
a script. A client that keeps `concurrency` requests in flight at all times achieves concurrency / latency
requests per second: the bound. For each concurrency the benchmark learns the problems into a fresh library and
reports the requests the server answered per second of the run, that rate over the bound, and the entries left
with the same zone, level and text as another (`duplicates`, which must be 0). Then a bare client (flexlearn's
HTTP client alone, `models.http.ClientPool`, `concurrency` workers each sending one actor request after another)
runs against the same server: `bare_fraction_of_bound` is what this machine achieves with no learning at all, and
`fraction_of_bare` the learning run's rate over it, the share that is ours. `fifo_schedule_fraction_of_bound` is
what the script's chains of calls allow at best when calls are served first come, first served, as `learn` serves
them: a simulation with no overhead at all (`--compare-orders REQUESTS` simulates other orders, without a run).

The script: problem n is solved once the actor's prompt carries n mod 5 rounds of the critic's feedback, so
problems take 1 to 5 actor rounds; the distiller writes a principle, a pattern and a case for each verdict seen;
the updater merges a pattern into a neighbour of its operation, discards a principle that has a neighbour, and
adds the rest (cases and exact copies are decided without a call). About 8 requests a problem, 3 to 11 of them
one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

OPS = {"sum": lambda a, b: a + b, "product": lambda a, b: a * b, "difference": lambda a, b: a - b}
_QUESTION = re.compile(r"What is the (sum|product|difference) of (\d+) and (\d+)\?")
_ROLES = {
    "careful problem solver": "actor",
    "You are a critic": "critic",
    "You distil experience": "distiller",
    "You maintain an experience library": "updater",
}


# -- the scripted server ------------------------------------------------------------------------------------


def _actor(user: str) -> str:
    match = _QUESTION.search(user.split("Problem:")[-1])
    if match is None:
        return "Final answer: \\boxed{0}"
    kind, a, b = match.group(1), int(match.group(2)), int(match.group(3))
    right = OPS[kind](a, b)
    rounds_of_feedback = user.count("\nAttempt ")
    answer = right if rounds_of_feedback >= a % 5 else right + 1
    return f"The {kind} of {a} and {b} is {answer}. Final answer: \\boxed{{{answer}}}"


def _distiller(user: str) -> str:
    match = _QUESTION.search(user)
    kind, a, b = (match.group(1), match.group(2), match.group(3)) if match else ("sum", "0", "0")
    out = []
    for verdict, zone, how in (("CORRECT", "golden", "computed"), ("WRONG", "warning", "guessed")):
        if verdict in user:
            out += [
                {"zone": zone, "level": "principle", "title": "arithmetic", "content": f"A {kind} {how} right."},
                {"zone": zone, "level": "pattern", "title": f"{kind}", "content": f"A {kind} of two numbers {how}."},
                {"zone": zone, "level": "case", "title": f"{kind} {a} {b}", "content": f"{kind} of {a} and {b} {how}."},
            ]
    return json.dumps({"experiences": out})


def _updater(user: str) -> str:
    header = re.search(r"Candidate \((\w+) (\w+),", user)
    zone, level = header.groups() if header else ("golden", "case")
    same = re.search(rf"^\[([\w-]+)\] \({zone} {level}, ([^)]*)\)", user, flags=re.MULTILINE)
    if same is not None and level == "pattern":
        merged = f"{same.group(2)} of two numbers ({zone}): write both, combine them, check the result."
        return json.dumps({"action": "merge", "target": same.group(1), "merged_content": merged, "reason": "same"})
    if same is not None and level == "principle":
        return json.dumps({"action": "discard", "target": same.group(1), "reason": "covered"})
    return json.dumps({"action": "add", "reason": "new"})


def reply(body: dict) -> str:
    messages = body.get("messages", [])
    system = messages[0]["content"] if messages else ""
    user = "\n".join(m["content"] for m in messages[1:])
    role = next((r for marker, r in _ROLES.items() if marker in system), "actor")
    if role == "critic":
        return json.dumps({"diagnosis": "Off by one.", "next_step": "Recompute it digit by digit."})
    return {"actor": _actor, "distiller": _distiller, "updater": _updater}[role](user)


async def _serve(latency: float) -> None:
    served = 0
    # Requests being answered now, and the most at once since the last GET /peak (which reads and resets it).
    in_flight = peak = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served, in_flight, peak
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                raw = await reader.readexactly(int(headers.get("content-length", 0)))
                if lines[0].startswith("GET /served"):
                    payload = json.dumps({"served": served}).encode()
                elif lines[0].startswith("GET /peak"):
                    payload, peak = json.dumps({"peak": peak}).encode(), in_flight
                else:
                    # The reply goes out `latency` after the request arrived, the server's own work included.
                    arrived = asyncio.get_running_loop().time()
                    in_flight += 1
                    peak = max(peak, in_flight)
                    text = reply(json.loads(raw))
                    await asyncio.sleep(latency - (asyncio.get_running_loop().time() - arrived))
                    in_flight -= 1
                    served += 1
                    message = {"role": "assistant", "content": text}
                    usage = {"prompt_tokens": len(raw) // 4, "completion_tokens": len(text) // 4}
                    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    payload = json.dumps({"object": "chat.completion", "choices": [choice], "usage": usage}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


# -- the benchmark ------------------------------------------------------------------------------------------


def served_count(port: int) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/served", timeout=10) as response:
        return int(json.load(response)["served"])


def peak_in_flight(port: int) -> int:
    """The most requests the server answered at once since the last call."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/peak", timeout=10) as response:
        return int(json.load(response)["peak"])


def _duplicates(library_path: Path) -> int:
    from flexlearn.library.store import Library

    with Library.open(library_path, create=False) as lib:
        texts = Counter((str(e.zone), str(e.level), e.content.strip()) for e in lib.list())
    return sum(n - 1 for n in texts.values())


async def _learn(port: int, train: Path, library_path: Path, concurrency: int) -> dict[str, object]:
    import flexlearn
    from flexlearn.library.store import Library

    model = flexlearn.connect(f"openai:scripted@http://127.0.0.1:{port}/v1", concurrency=concurrency)
    with Library.open(library_path) as lib:
        start = time.perf_counter()
        summary = await flexlearn.alearn(
            train, task="math", agents=model, library=lib, concurrency=concurrency, rollouts=1, rounds=5
        )
        seconds = time.perf_counter() - start
    await model.aclose()
    return {"seconds": seconds, "solved": summary.solved, "failed": summary.failed, "actions": summary.actions}


async def _bare(port: int, concurrency: int, requests: int) -> float:
    """Requests per second of `concurrency` workers sharing `requests` chat calls, with nothing else to do, on the
    HTTP client the learning run uses."""
    from flexlearn.models.http import ClientPool

    body = {
        "model": "scripted",
        "messages": [
            {"role": "system", "content": "You are a careful problem solver."},
            {"role": "user", "content": "Problem: What is the sum of 10 and 3?"},
        ],
    }
    left = requests
    http = ClientPool(timeout=60)

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            response = await http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
            response.json()

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - start)
    finally:
        await http.aclose()


def script_chains(problems: int, requests: int) -> list[list[int]]:
    """Each problem's calls under the script, as stages of calls that can run at once: its actor and critic calls
    one after another (problem n needs (10 + n) mod 5 rounds of feedback), the distiller's call, then the updater's
    calls together. The updater's calls are the run's requests left over, spread evenly (rechecks included)."""
    explore = [2 * ((10 + n) % 5) + 1 for n in range(problems)]
    spare = max(0, requests - sum(explore) - problems)
    return [[1] * calls + [1] + [spare // problems + (n < spare % problems)] for n, calls in enumerate(explore)]


# Orders a scheduler could serve waiting calls in: the key of a waiting call, from (problem, stages done, chain
# length, arrival); the smallest goes first. Only "longest_first" needs to know a problem's cost before exploring
# it. "ends_last" serves exploration's calls first, then the distiller's, then the updater's (a call's role says
# which); "deepest_first" serves exploration's later rounds first. The simulation knows no re-checks: served in
# either order in `learn` (measured at 64, 128 problems), the updater's decisions bunched up, went stale more
# often, and the run needed 4-7% more calls and took 5-9% longer than first come, first served (README).
ORDERS: dict[str, Callable[[int, int, int, int], tuple[float, ...]]] = {
    "fifo": lambda p, done, length, arrival: (arrival,),
    "fewest_first": lambda p, done, length, arrival: (done, arrival),
    "most_first": lambda p, done, length, arrival: (-done, arrival),
    "problem_order": lambda p, done, length, arrival: (p, arrival),
    "random": lambda p, done, length, arrival: (random.Random(arrival).random(),),
    "longest_first": lambda p, done, length, arrival: (done - length, arrival),
    "ends_last": lambda p, done, length, arrival: (max(0, done - (length - 3)), arrival),
    "deepest_first": lambda p, done, length, arrival: (-done if done < length - 2 else 0, arrival),
}


def schedule_seconds(
    chains: list[list[int]], concurrency: int, latency: float, in_flight: int, order: str = "fifo"
) -> float:
    """How long the calls of `chains` take on `concurrency` slots with no overhead at all: every call takes
    `latency`, a stage starts when the one before it ends, and `in_flight` problems are worked on at once, the next
    starting as one ends (as `learn` does). Waiting calls are served in `order` (`ORDERS`; `learn` serves them
    first come, first served)."""
    key = ORDERS[order]
    arrivals = itertools.count()
    waiting: list[tuple[tuple[float, ...], int]] = []  # (key, problem)
    running: list[tuple[float, int, int]] = []  # (end, tie-break, problem)
    stage, left = [0] * len(chains), [0] * len(chains)
    pending = iter(range(len(chains)))
    free, now = concurrency, 0.0

    def start_stage(p: int) -> None:
        left[p] = chains[p][stage[p]]
        for _ in range(left[p]):
            heapq.heappush(waiting, (key(p, stage[p], len(chains[p]), next(arrivals)), p))

    for p in itertools.islice(pending, in_flight):
        start_stage(p)
    while waiting or running:
        while free and waiting:
            _, p = heapq.heappop(waiting)
            free -= 1
            heapq.heappush(running, (now + latency, next(arrivals), p))
        now, _, p = heapq.heappop(running)
        free += 1
        left[p] -= 1
        if left[p] == 0:
            stage[p] += 1
            if stage[p] < len(chains[p]):
                start_stage(p)
            elif (nxt := next(pending, None)) is not None:
                start_stage(nxt)
    return now


def compare_orders(problems: int, requests: int, concurrency: int, latency: float) -> dict[str, float]:
    """The fraction of the bound each order in `ORDERS` reaches on the script's chains, no overhead at all."""
    from flexlearn.loop.learn import PROBLEMS_PER_SLOT

    chains = script_chains(problems, requests)
    bound = concurrency / latency
    return {
        order: round(
            requests / schedule_seconds(chains, concurrency, latency, PROBLEMS_PER_SLOT * concurrency, order) / bound, 3
        )
        for order in ORDERS
    }


def script_problems(problems: int) -> list[dict[str, str]]:
    """The training problems the script knows: sums, products and differences of two numbers."""
    kinds = list(OPS)
    out = []
    for n in range(problems):
        kind, a, b = kinds[n % 3], 10 + n, 3 + (7 * n) % 50
        out.append({"question": f"What is the {kind} of {a} and {b}?", "answer": str(OPS[kind](a, b))})
    return out


def bench(port: int, folder: Path, problems: int, latency: float, concurrency: int) -> dict[str, object]:
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps(p) + "\n" for p in script_problems(problems)))
    library_path = folder / f"c{concurrency}.flexlib"
    before = served_count(port)
    run = asyncio.run(_learn(port, train, library_path, concurrency))
    requests = served_count(port) - before
    seconds = float(run.pop("seconds"))  # type: ignore[arg-type]
    rate = requests / seconds
    bound = concurrency / latency
    # At most 40 rounds per worker: enough to be steady, and concurrency 1 need not take as long as learning.
    bare = asyncio.run(_bare(port, concurrency, min(requests, 40 * concurrency)))
    from flexlearn.loop.learn import PROBLEMS_PER_SLOT

    in_flight = PROBLEMS_PER_SLOT * concurrency
    schedule = schedule_seconds(script_chains(problems, requests), concurrency, latency, in_flight)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "requests_per_problem": round(requests / problems, 1),
        "seconds": round(seconds, 2),
        "requests_per_s": round(rate, 1),
        "bound_per_s": round(bound, 1),
        "fraction_of_bound": round(rate / bound, 3),
        "bare_fraction_of_bound": round(bare / bound, 3),
        "fraction_of_bare": round(rate / bare, 3),
        # What a first-come-first-served scheduler with no overhead at all reaches on the script's chains.
        "fifo_schedule_fraction_of_bound": round(requests / schedule / bound, 3),
        "duplicates": _duplicates(library_path),
        **run,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated concurrencies")
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per reply")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--compare-orders",
        type=int,
        metavar="REQUESTS",
        help="only simulate: the fraction of the bound each order of serving calls reaches on the script's chains "
        "with this many requests in all (a run's `requests`), at each --concurrency, with no overhead",
    )
    args = parser.parse_args(argv)
    if args.compare_orders:
        sims = {
            c: compare_orders(args.problems, args.compare_orders, int(c), args.latency)
            for c in args.concurrency.split(",")
        }
        print(json.dumps({"problems": args.problems, "requests": args.compare_orders, "orders": sims}, indent=2))
        return
    if args.serve:
        asyncio.run(_serve(args.latency))
        return
    # The server gets its own process, so its work does not slow the client it measures.
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as folder:
            runs = [bench(port, Path(folder), args.problems, args.latency, int(c)) for c in args.concurrency.split(",")]
    finally:
        server.terminate()
        server.wait()
    print(json.dumps({"problems": args.problems, "latency_s": args.latency, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
