"""Does learning help? Learn on a training slice (GSM8k, or ACE's XBRL Formula with `--task formula`), evaluate a
disjoint test slice in the paper's four modes, and print ONE JSON object: each mode's accuracy (and per category,
when the problems carry one; and read leniently, a reply that states no answer scored on its last number), the
paired difference flex minus each baseline with a paired bootstrap 95% interval (and read leniently),
the library's composition, and calls, tokens and seconds per phase.

    python benchmarks/efficacy.py                                  # local:qwen2.5-coder-1.5b, 30 train, 100 test
    python benchmarks/efficacy.py --train-n 10 --test-n 20         # smaller
    python benchmarks/efficacy.py --task formula                   # XBRL Formula: 60 train, 200 of val.jsonl
    python benchmarks/efficacy.py --tools python --work benchmarks/.efficacy/tools  # the paper's setting
    python benchmarks/efficacy.py --model openai:qwen2.5-7b@http://127.0.0.1:8000/v1 --concurrency 8
    python benchmarks/efficacy.py --library mine.flexlib --work benchmarks/.efficacy/mine  # flex with a given library
    python benchmarks/efficacy.py --task formula --modes vanilla,icl,agent,flex,ace --ace-python ace-venv/bin/python

Every finished item is cached in the work folder (`--work`, by default one per model and task), and learning
resumes through the library's own run ledger, so an interrupted run picks up where it stopped: run the same command
again. A cached item is reused only while its fingerprint holds (model, mode, the prompt files the mode reads, the
evaluation settings and, for flex, the library's content); change one and that mode is evaluated afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from item_cache import Cache, fingerprint, tool_actor_sources

import flexlearn
from flexlearn.engine import Engine, paired
from flexlearn.models import ChatModel, Meter
from flexlearn.models.local import DEFAULT_THREADS, REPLY_REVISION
from flexlearn.models.memo import ReplyMemo, is_deterministic
from flexlearn.retrieval import DEFAULT_RETRIEVER
from flexlearn.settings import EvalSettings
from flexlearn.tasks import Problem, Task, get_task
from flexlearn.tasks.common import last_number

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "gsm8k"
FORMULA_DATA = HERE / "data" / "finance_formula"
# Per task: the default --train and --test files and --train-n and --test-n.
TASKS: dict[str, tuple[Path, Path, int, int]] = {
    "gsm8k": (DATA / "train.jsonl", DATA / "test.jsonl", 30, 100),
    "formula": (FORMULA_DATA / "train.jsonl", FORMULA_DATA / "val.jsonl", 60, 200),
}
PROMPTS = Path(flexlearn.__file__).resolve().parent / "prompts"
MODES = ("vanilla", "icl", "agent", "flex")
# The prompt files each mode's calls read; a change to one invalidates that mode's cached items.
MODE_PROMPTS = {
    "vanilla": ("actor_system", "actor_user"),
    "icl": ("actor_system", "actor_user"),
    "agent": ("actor_system", "actor_user", "judge_system", "judge_user"),
    "flex": ("actor_system", "actor_user"),
}


# The code that turns retrieved experience into the actor's prompt: a change to it invalidates flex's cached items.
FLEX_SOURCES = (
    "agents/actor.py",
    "agents/critic.py",
    "agents/relation.py",
    "retrieval/guidance.py",
    "prompts/review_system.txt",
    "prompts/review_user.txt",
)


def _source_text(names: Sequence[str]) -> list[str]:
    package = Path(flexlearn.__file__).resolve().parent
    return [(package / name).read_text() for name in names]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _prompt_text(names: Sequence[str]) -> list[str]:
    return [(PROMPTS / f"{name}.txt").read_text() if (PROMPTS / f"{name}.txt").exists() else "" for name in names]


def library_fingerprint(library: flexlearn.Library) -> str:
    """The library's content: what flex mode can retrieve."""
    entries = sorted((e.id, e.zone, e.level, e.title, e.content, e.parent_id or "") for e in library.list())
    return fingerprint(entries)


class Phases:
    """Calls, tokens and seconds per phase, summed over every invocation (a resumed run adds to them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}

    def add(
        self, phase: str, *, seconds: float, calls: int, prompt_tokens: int, completion_tokens: int, **more: int
    ) -> None:
        """Add to `phase`'s counts; `more` are counts a phase has beyond the four (e.g. `reused_calls`)."""
        row = self.data.setdefault(phase, {"seconds": 0.0, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        row["seconds"] += seconds
        row["calls"] += calls
        row["prompt_tokens"] += prompt_tokens
        row["completion_tokens"] += completion_tokens
        for name, value in more.items():
            row[name] = row.get(name, 0) + value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def _meter_totals(meter: Any) -> tuple[int, int, int]:
    snapshot = meter.snapshot()
    rows = snapshot.values() if isinstance(snapshot, dict) else snapshot
    calls = prompt = completion = 0
    for row in rows:
        calls += int(row.get("calls", 0))
        prompt += int(row.get("prompt_tokens", 0))
        completion += int(row.get("completion_tokens", 0))
    return calls, prompt, completion


def composition(library: flexlearn.Library) -> dict[str, Any]:
    entries = library.list()
    by: dict[str, int] = {}
    for e in entries:
        by[f"{e.zone}/{e.level}"] = by.get(f"{e.zone}/{e.level}", 0) + 1
    linked = sum(1 for e in entries if e.parent_id)
    return {"total": len(entries), "by_zone_level": dict(sorted(by.items())), "with_parent": linked}


def load(task: str, path: Path, n: int) -> list[Problem]:
    problems = get_task(task).load(path)
    if n > len(problems):
        sys.exit(f"{path} holds {len(problems)} problems, fewer than the {n} asked for")
    return problems[:n]


def _connect(args: argparse.Namespace, meter: Meter) -> flexlearn.Agents:
    model = flexlearn.connect(args.model, concurrency=args.concurrency, meter=meter, timeout=args.timeout)
    return flexlearn.Agents(actor=model, meter=meter)


async def learn_phase(
    args: argparse.Namespace, train: list[Problem], library: flexlearn.Library, phases: Phases
) -> dict:
    latest = library.latest_run("learn")
    if latest is not None and library.run_status(latest) == "done":
        return {"run_id": latest, "skipped": "learned in an earlier invocation"}
    meter = Meter()
    agents = _connect(args, meter)
    started = time.monotonic()

    def progress(p: Any) -> None:
        print(f"learn {p.done}/{p.total} solved {p.solved} failed {p.failed}", file=sys.stderr, flush=True)

    try:
        summary = await flexlearn.alearn(
            train,
            task=args.task,
            agents=agents,
            library=library,
            concurrency=args.concurrency,
            resume=latest is not None,
            explore_with_library=args.explore_with_library and not args.explore_blind,
            distiller_slots=args.distiller_slots,
            rollouts=args.rollouts,
            rounds=args.rounds,
            on_progress=progress,
            tools=args.tools,
        )
    finally:
        await agents.aclose()
    calls, prompt, completion = _meter_totals(meter)
    phases.add(
        "learn", seconds=time.monotonic() - started, calls=calls, prompt_tokens=prompt, completion_tokens=completion
    )
    return {"run_id": summary.run_id, "solved": summary.solved, "unsolved": summary.unsolved, "failed": summary.failed}


# The evaluation settings each mode's items depend on (the cache key); the rest of `EVAL` applies to all: the
# library's defaults (the agent's rounds, by the model: 2 for a local one, as the items cached before that default
# existed were run).
_DEFAULTS_KEPT = ("icl_k", "budget_tokens", "retriever", "min_shared", "case_min_shared", "guide_at", "agent_rounds")
EVAL: dict[str, Any] = EvalSettings().model_dump(include=set(_DEFAULTS_KEPT))
MODE_SETTINGS = {
    "vanilla": (),
    "icl": ("icl_k",),
    "agent": ("agent_rounds",),
    "flex": ("budget_tokens", "retriever", "min_shared", "case_min_shared", "guide_at", "agent_rounds"),
}


def mode_settings(actor: ChatModel, mode: str) -> dict[str, Any]:
    """The settings `mode`'s items depend on, as the evaluation resolves them: flex's `guide_at` and the agent's
    rounds left unset are what they are for `actor` (`--guide-at review` and the default then share their items for
    the 1.5B)."""
    settings = {name: EVAL[name] for name in MODE_SETTINGS[mode]}
    engine = Engine.of(None, actor)
    if "guide_at" in settings and settings["guide_at"] is None:
        settings["guide_at"] = engine.guide_at
    if "agent_rounds" in settings and settings["agent_rounds"] is None:
        settings["agent_rounds"] = engine.agent_rounds
    return settings


def _reply_memo(agents: flexlearn.Agents, folder: Path) -> ReplyMemo | None:
    """An embedded model answers a request the same way every time: its replies are kept in the work folder's
    `replies.jsonl` and a request asked again (the agent's first attempt is vanilla's request) takes the kept reply
    (`flexlearn.models.memo`). Its items still count that call and its tokens, as asked alone; the phase records
    them as `reused_*`, and the item's seconds leave it out. None for any other model."""
    if not is_deterministic(agents.actor):
        return None
    memo = ReplyMemo(agents.actor, folder / "replies.jsonl", salt=f"reply-revision-{REPLY_REVISION}")
    agents.actor = agents.critic = agents.distiller = agents.updater = memo
    return memo


async def eval_phase(
    args: argparse.Namespace,
    mode: str,
    test: list[Problem],
    train: list[Problem],
    library: flexlearn.Library | None,
    cache: Cache,
    phases: Phases,
) -> list[dict[str, Any]]:
    task = get_task(args.task)
    uses_tools = bool(args.tools) and mode in ("agent", "flex")
    meter = Meter()
    agents = _connect(args, meter)  # cheap: a local model loads on its first call, an HTTP one connects on it
    memo = _reply_memo(agents, cache.path.parent)
    try:
        key = fingerprint(
            args.model,
            mode,
            _prompt_text(MODE_PROMPTS[mode]),
            task.answer_format,
            mode_settings(agents.actor, mode),
            library_fingerprint(library) if mode == "flex" and library is not None else "",
            [p.id for p in train] if mode == "icl" else [],
            *([_source_text(FLEX_SOURCES)] if mode == "flex" else []),
            # How the embedded backend turns a prompt into a reply (it once depended on the previous prompt).
            *([REPLY_REVISION] if args.model.startswith("local:") else []),
            # Tools change agent and flex only; without them the key is what it was before --tools existed.
            *([args.tools, tool_actor_sources()] if uses_tools else []),
        )
        todo = [p for p in test if cache.get(key, p.id) is None]
        if todo:
            started = time.monotonic()
            done = [0]

            def on_item(item: Any) -> None:
                if item.error is None:
                    cache.put(
                        {
                            "key": key,
                            "mode": mode,
                            "problem_id": item.problem_id,
                            "correct": bool(item.correct),
                            "extracted": item.extracted,
                            "calls": item.calls,
                            "prompt_tokens": item.prompt_tokens,
                            "completion_tokens": item.completion_tokens,
                            "retrieved": list(item.retrieved),
                            "tool_calls": item.tool_calls,
                            "seconds": item.seconds,
                            "reply": item.reply[-3000:],
                        }
                    )
                done[0] += 1
                print(progress_line(mode, done[0], len(todo), time.monotonic() - started), file=sys.stderr, flush=True)

            await flexlearn.aevaluate(
                todo,
                task=task,
                modes=[mode],
                agents=agents,
                library=library if mode == "flex" else None,
                train=train,
                concurrency=args.concurrency,
                on_item=on_item,
                tools=args.tools if uses_tools else (),
                **EVAL,
            )
            calls, prompt, completion = _meter_totals(meter)
            # The meter counts the calls the model answered; the items count reused replies as well (`_reply_memo`).
            reused = (
                {
                    "reused_calls": memo.hits,
                    "reused_prompt_tokens": memo.reused.prompt_tokens,
                    "reused_completion_tokens": memo.reused.completion_tokens,
                }
                if memo is not None and memo.hits
                else {}
            )
            phases.add(
                f"eval:{mode}",
                seconds=time.monotonic() - started,
                calls=calls,
                prompt_tokens=prompt,
                completion_tokens=completion,
                **reused,
            )
    finally:
        await agents.aclose()
    items = [cache.get(key, p.id) for p in test]
    return [i for i in items if i is not None]


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def progress_line(mode: str, done: int, total: int, elapsed: float) -> str:
    """`flex 12/117, 13 min, ~1.1 min an item, ~1 h 54 min left`: the rate of this invocation's items so far (with
    the model's load in the first); what is left is the rest at that rate."""
    if done <= 0:
        return f"{mode} 0/{total}"
    rate = elapsed / done
    left = f", ~{_duration(rate * (total - done))} left" if done < total else ""
    return f"{mode} {done}/{total}, {_duration(elapsed)}, ~{rate / 60:.1f} min an item{left}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Run in a child (a server, the peer) before it starts: it is killed when this process ends, however that
    ends (a killed benchmark would otherwise leave a server generating for minutes on a core). Linux only."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def ace_servers(concurrency: int, threads: int, cpus: int, learned: bool) -> list[tuple[str, int, int]]:
    """The peer's phases as (phase, servers, llama.cpp threads each). ACE learns one problem at a time, so its
    learning gets one server with the threads of all the servers that answer (at most a thread a core): on two
    cores, one server of two threads learned a problem in ~160 s, one of one thread beside another run in 4.5 to
    8 minutes. The test problems then go to `concurrency` servers of `threads` each, the way FLEX_LOCAL_WORKERS
    runs the in-process model."""
    servers = max(1, concurrency)
    plan = [] if learned else [("learn", 1, max(1, min(cpus, servers * threads)))]
    return [*plan, ("answer", servers, threads)]


@contextlib.contextmanager
def flex_servers(model: str, count: int, threads: int, work: Path) -> Iterator[list[str]]:
    """`count` servers of the local `model` (`flex serve`, each of `threads` llama.cpp threads over the same
    memory-mapped weights), up and answering; their base URLs. Each logs to a file in `work`, not a pipe nobody
    reads while ACE runs for hours. Stopped on leaving."""
    name = model.partition(":")[2] or "local"  # the name the servers answer to
    env = {**os.environ, "FLEX_LOCAL_THREADS": str(threads)}
    servers: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for i in range(count):
            port = _free_port()
            server_log = work / f"serve-{i}.log"
            serve = ["serve", "--model", model, "--port", str(port), "--alias", name]
            with server_log.open("w") as log_file:
                server = subprocess.Popen(
                    [sys.executable, "-m", "flexlearn", *serve],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=_die_with_parent,
                )
            servers.append((server, f"http://127.0.0.1:{port}/v1", server_log))
        deadline = time.monotonic() + 600
        for server, base_url, server_log in servers:
            while True:
                if server.poll() is not None:
                    sys.exit(f"flex serve exited: {server_log.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{base_url}/models", timeout=5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit("flex serve did not come up within 600 s")
                    time.sleep(1)
        yield [url for _, url, _ in servers]
    finally:
        for server, _, _ in servers:
            server.terminate()
        for server, _, _ in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:  # uvicorn lets the request in hand finish: minutes of generation
                server.kill()
                server.wait()


def ace_phase(
    args: argparse.Namespace, train: list[Problem], test: list[Problem], work: Path, phases: Phases
) -> list[dict[str, Any]]:
    """The peer's row: `flex serve` puts the same GGUF behind an OpenAI-compatible endpoint, `ace_peer.py` runs
    kayba's ACE against it in its own environment (`--ace-python`: learning on the same training problems, then
    answering the test problems; resumable), and each final answer it gave is scored with this task's checker."""
    if not args.ace_python:
        sys.exit("mode ace needs --ace-python: the python of an environment with ace-framework installed")
    if args.model.split(":", 1)[0] != "local":
        sys.exit("mode ace serves the local model with flex serve: give a local or local:... --model")
    name = args.model.partition(":")[2] or "local"
    work.mkdir(parents=True, exist_ok=True)
    slices = {}
    for part, problems in (("train", train), ("test", test)):  # the problems as loaded here, ids included
        slices[part] = work / f"{part}.jsonl"
        rows = (json.dumps({"id": p.id, "question": p.question, "answer": p.answer}) for p in problems)
        slices[part].write_text("".join(f"{row}\n" for row in rows))
    state_path = work / "state.json"
    trained = json.loads(state_path.read_text()).get("trained", 0) if state_path.exists() else 0
    threads = int(os.environ.get("FLEX_LOCAL_THREADS") or DEFAULT_THREADS)
    for phase, count, phase_threads in ace_servers(
        args.concurrency, threads, os.cpu_count() or 1, learned=trained >= len(train)
    ):
        with flex_servers(args.model, count, phase_threads, work) as urls:
            cmd = [str(args.ace_python), str(HERE / "ace_peer.py"), "--base-url", *urls, "--model", name]
            cmd += ["--train", str(slices["train"]), "--test", str(slices["test"]), "--work", str(work)]
            cmd += ["--skill-manager-prompt", args.ace_skill_manager_prompt]
            cmd += ["--learn-only"] if phase == "learn" else []
            subprocess.run(cmd, check=True, preexec_fn=_die_with_parent)
    state = json.loads((work / "state.json").read_text())
    phases.data.update({f"ace:{k}": v for k, v in state.get("phases", {}).items()})
    task = get_task(args.task)
    by_id = {p.id: p for p in test}
    items = []
    for line in (work / "items.jsonl").read_text().splitlines():
        item = json.loads(line)
        problem = by_id.get(item["problem_id"])
        if problem is None:
            continue
        score = task.score(item["final_answer"], problem)
        items.append({**item, "correct": score.correct, "extracted": score.extracted})
    return items


def default_work(model: str, task: str) -> Path:
    """The work folder when --work is not given: one per model, and per task besides gsm8k (whose folder is named
    as before the option existed, so its caches stay in use)."""
    return HERE / ".efficacy" / (_slug(model) if task == "gsm8k" else f"{_slug(model)}-{_slug(task)}")


def resolve_task_defaults(args: argparse.Namespace) -> None:
    """Fill in --train, --test, --train-n and --test-n left unset with the defaults of --task."""
    train, test, train_n, test_n = TASKS[args.task]
    args.train = args.train or train
    args.test = args.test or test
    args.train_n = train_n if args.train_n is None else args.train_n
    args.test_n = test_n if args.test_n is None else args.test_n


def lenient_reply(task: Task, reply: str) -> str:
    """`reply` as the task would read it if its last number were its stated answer, when it states none: how much
    of a difference between modes is the answer line rather than the answer."""
    if task.extract_answer(reply) is not None:
        return reply
    number = last_number(reply)
    return reply if number is None else f"{reply}\nFinal answer: {number}"


def lenient_correct(task: Task, problem: Problem, item: dict[str, Any]) -> bool:
    """An item's correctness read leniently (`lenient_reply`); an item with no reply kept (ACE's answers are
    a JSON field) is as scored."""
    if item["correct"] or "reply" not in item:
        return bool(item["correct"])
    return task.score(lenient_reply(task, item["reply"]), problem).correct


def by_category(test: Sequence[Problem], results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[int]]]:
    """category -> {mode: [correct, n]} over the evaluated items of each mode, categories sorted; empty when no
    test problem carries a category."""
    category = {p.id: p.category for p in test}
    table: dict[str, dict[str, list[int]]] = {}
    for mode, items in results.items():
        for item in items:
            kind = category.get(item["problem_id"], "")
            if kind:
                row = table.setdefault(kind, {}).setdefault(mode, [0, 0])
                row[0] += int(bool(item["correct"]))
                row[1] += 1
    return dict(sorted(table.items()))


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = args.work or default_work(args.model, args.task)
    work.mkdir(parents=True, exist_ok=True)
    train = load(args.task, args.train, args.train_n)
    test = load(args.task, args.test, args.test_n)
    if {p.question for p in train} & {p.question for p in test}:
        sys.exit("the training and test slices share a question; give disjoint files")
    cache = Cache(work / "items.jsonl")
    phases = Phases(work / "phases.json")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    library = flexlearn.Library.open(args.library or work / f"train{args.train_n}.flexlib", create=not args.library)
    try:
        if args.library:
            learned = {"skipped": f"flex evaluated with {args.library}"}
        else:
            learned = await learn_phase(args, train, library, phases) if "flex" in modes else {}
        if "flex" in modes:
            print(f"library: {composition(library)}", file=sys.stderr, flush=True)
        results: dict[str, list[dict[str, Any]]] = {}
        for mode in modes:
            if mode == "ace":
                # a folder per skill manager prompt: a skillbook is learned with one
                folder = "ace" if args.ace_skill_manager_prompt == "update-wrapped" else "ace-default-prompt"
                results[mode] = ace_phase(args, train, test, work / folder, phases)
            else:
                results[mode] = await eval_phase(args, mode, test, train, library, cache, phases)
        out: dict[str, Any] = {
            "model": args.model,
            "train": {"file": str(args.train), "n": len(train)},
            "test": {"file": str(args.test), "n": len(test)},
            "tools": args.tools,
            "learn": learned,
            "modes": {},
            "paired": {},
            "library": composition(library),
            "phases": phases.data,
        }
        task = get_task(args.task)
        by_id = {p.id: p for p in test}
        lenient = {
            mode: {i["problem_id"]: lenient_correct(task, by_id[i["problem_id"]], i) for i in items}
            for mode, items in results.items()
        }
        for mode, items in results.items():
            n = len(items)
            correct = sum(i["correct"] for i in items)
            out["modes"][mode] = {
                "accuracy": correct / n if n else 0.0,
                "correct": correct,
                "n": n,
                # Read leniently: a reply that states no answer scored on its last number (see `lenient_reply`).
                "lenient_correct": sum(lenient[mode].values()),
                "no_answer": sum(i.get("extracted") is None for i in items),
                "calls_per_item": sum(i["calls"] for i in items) / n if n else 0.0,
                "tool_calls_per_item": sum(i.get("tool_calls", 0) for i in items) / n if n else 0.0,
                "prompt_tokens_per_item": sum(i["prompt_tokens"] for i in items) / n if n else 0.0,
                "completion_tokens_per_item": sum(i["completion_tokens"] for i in items) / n if n else 0.0,
            }
        if "flex" in results:
            flex = {i["problem_id"]: i["correct"] for i in results["flex"]}
            for mode, items in results.items():
                if mode == "flex":
                    continue
                base = {i["problem_id"]: i["correct"] for i in items}
                ids = [p.id for p in test if p.id in flex and p.id in base]
                out["paired"][f"flex-{mode}"] = paired([flex[i] for i in ids], [base[i] for i in ids])
                out.setdefault("paired_lenient", {})[f"flex-{mode}"] = paired(
                    [lenient["flex"][i] for i in ids], [lenient[mode][i] for i in ids]
                )
        categories = by_category(test, results)
        if categories:
            out["by_category"] = categories
        return out
    finally:
        library.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--task", choices=tuple(TASKS), default="gsm8k", help="benchmark task [default: gsm8k]")
    parser.add_argument(
        "--train",
        type=Path,
        default=None,
        help="training problems [default: data/gsm8k/train.jsonl, data/finance_formula/train.jsonl for formula]",
    )
    parser.add_argument(
        "--test",
        type=Path,
        default=None,
        help="test problems [default: data/gsm8k/test.jsonl, data/finance_formula/val.jsonl for formula]",
    )
    parser.add_argument("--train-n", type=int, default=None, help="[default: 30 for gsm8k, 60 for formula]")
    parser.add_argument("--test-n", type=int, default=None, help="[default: 100 for gsm8k, 200 for formula]")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="comma-separated, of vanilla, icl, agent, flex and ace (the peer: needs --ace-python) "
        "[default: %(default)s]",
    )
    parser.add_argument(
        "--ace-python",
        type=Path,
        default=None,
        help="mode ace: the python of a separate environment with ace-framework==0.7.1 installed",
    )
    parser.add_argument(
        "--ace-skill-manager-prompt",
        choices=("update-wrapped", "default"),
        default="update-wrapped",
        help='mode ace: ACE 0.7.1\'s skill manager prompt shows its JSON without the "update" key its reply model '
        "requires, so a model that copies it learns nothing (default: the same prompt with the JSON under "
        '"update"; see benchmarks/ace_peer.py)',
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="problems at a time; a local model answers them on as many llama workers, no more than the cores "
        "hold (its backend's default; FLEX_LOCAL_WORKERS sets the count) [default: %(default)s]",
    )
    parser.add_argument(
        "--rollouts",
        type=int,
        help="learning: rollouts per problem [default: the library's: 1 for an embedded instruction model, else 3] "
        "(give a fresh --work)",
    )
    parser.add_argument(
        "--rounds", type=int, help="learning: rounds per rollout [default: the library's, 2 for a local model]"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="cache folder [default: benchmarks/.efficacy/MODEL for gsm8k, benchmarks/.efficacy/MODEL-TASK otherwise]",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--library",
        type=Path,
        default=None,
        help="evaluate flex with this library instead of learning one (icl still draws from --train)",
    )
    parser.add_argument(
        "--explore-with-library",
        action="store_true",
        help="learning: show each problem's actor the library as it grows (default: explore without it, as flex "
        "learn does; the GSM8k runs of the README were made with it, the default until 2026-12-07)",
    )
    # The default since 2026-12-07; kept so that the commands in benchmarks/results still run as written.
    parser.add_argument("--explore-blind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--distiller-slots",
        action="store_true",
        help="learn with the distiller held to one principle and one pattern per zone (give a fresh --work)",
    )
    parser.add_argument(
        "--min-shared", type=int, default=0, help="flex mode: show only hits sharing this many content words"
    )
    parser.add_argument(
        "--case-min-shared",
        type=int,
        default=None,
        help="flex mode: show only cases sharing this many content words [default: by the actor's kind, 5 for chat]",
    )
    parser.add_argument(
        "--guide-at",
        choices=("prompt", "review"),
        default=None,
        help="flex mode: lessons in the actor's prompt, or given to the agent's critic to check attempts against "
        "[default: review for an embedded chat model, prompt otherwise]",
    )
    parser.add_argument("--budget", type=int, default=1500, help="flex mode: token budget for retrieved experience")
    parser.add_argument("--retriever", default=DEFAULT_RETRIEVER, help="flex mode: retriever [default: %(default)s]")
    parser.add_argument(
        "--tools",
        default="",
        help="tools of the actor while learning and in agent and flex modes, e.g. python (the paper's setting; "
        "vanilla and icl stay tool-free; give a fresh --work)",
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    resolve_task_defaults(args)
    EVAL["min_shared"], EVAL["budget_tokens"], EVAL["retriever"] = args.min_shared, args.budget, args.retriever
    EVAL["case_min_shared"], EVAL["guide_at"] = args.case_min_shared, args.guide_at
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
