"""Do tools help? Evaluate a GSM8k slice and a slice of AIME-style integer problems in four settings, and print ONE
JSON object with each setting's accuracy and its cost per item (model calls, tool calls, tokens, seconds):

- vanilla: the plain model;
- agent: actor + blind critic retries, no tools;
- agent+python: the same with the sandboxed Python tool (the paper's Agent baseline);
- flex+python: experience from a library in the prompt, the Python tool and the experience search tool (the
  paper's FLEX actor). Needs `--library`; without one this setting is skipped.

    python benchmarks/tools.py                                        # local:qwen2.5-coder-1.5b, 10 + 12 items
    python benchmarks/tools.py --gsm8k-n 50 --settings agent,agent+python
    python benchmarks/tools.py --library gsm8k.flexlib --model openai:qwen2.5-7b@http://127.0.0.1:8000/v1

Every finished item is cached in `--work` under a key of the model, setting and options, so an interrupted run
resumes where it stopped: run the same command again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from item_cache import Cache, fingerprint, tool_actor_sources

import flexlearn
from flexlearn.engine import Engine, Mode
from flexlearn.settings import EvalSettings
from flexlearn.tasks import Problem, get_task

HERE = Path(__file__).resolve().parent
SLICES = {
    "gsm8k": ("gsm8k", HERE / "data" / "gsm8k" / "test.jsonl"),
    # Integer answers in 0..999, written for this benchmark; their answers were checked by brute force.
    "aime": ("aime", HERE / "data" / "aime_style" / "test.jsonl"),
}
# setting -> (mode, tools)
SETTINGS = {
    "vanilla": (Mode.VANILLA, ()),
    "agent": (Mode.AGENT, ()),
    "agent+python": (Mode.AGENT, ("python",)),
    "flex+python": (Mode.FLEX, ("python", "experience")),
}


async def run_setting(
    name: str, problems: list[Problem], task_name: str, args: argparse.Namespace, agents: flexlearn.Agents,
    library: flexlearn.Library | None, cache: Cache,
) -> dict[str, Any]:  # fmt: skip
    mode, tools = SETTINGS[name]
    # With tools, what the tool-using actor reads and runs is part of the key, so a changed prompt is evaluated
    # afresh; without, the key is what it always was.
    key = fingerprint(
        args.model, task_name, name, args.max_tokens, args.agent_rounds, *([tool_actor_sources()] if tools else [])
    )
    settings = EvalSettings.of(
        agent_rounds=args.agent_rounds, concurrency=1, tools=tools, temperature=0.0, max_tokens=args.max_tokens
    )
    engine = Engine.of(task_name, agents, library, evaluation=settings)
    for problem in problems:
        if (key, problem.id) in cache.items:
            continue
        started = time.monotonic()
        [result] = await engine.evaluate([problem], modes=[mode])
        item = result.items[0].model_dump(include={"problem_id", "correct", "calls", "tool_calls", "error"})
        item |= {
            "key": key,
            "tokens": result.items[0].prompt_tokens + result.items[0].completion_tokens,
            "seconds": time.monotonic() - started,
        }
        cache.put(item)
        print(f"{task_name} {name} {problem.id}: {'ok' if item['correct'] else 'wrong'}", file=sys.stderr)
    items = [cache.items[(key, p.id)] for p in problems]
    n = len(items) or 1
    return {
        "n": len(items),
        "accuracy": sum(i["correct"] for i in items) / n,
        "calls_per_item": sum(i["calls"] for i in items) / n,
        "tool_calls_per_item": sum(i["tool_calls"] for i in items) / n,
        "tokens_per_item": sum(i["tokens"] for i in items) / n,
        "seconds_per_item": sum(i["seconds"] for i in items) / n,
        "errors": sum(i["error"] is not None for i in items),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    args.work.mkdir(parents=True, exist_ok=True)
    cache = Cache(args.work / "items.jsonl")
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    library = flexlearn.Library.open(args.library, create=False) if args.library else None
    if library is None:
        settings = [s for s in settings if SETTINGS[s][0] != Mode.FLEX]
    out: dict[str, Any] = {"model": args.model, "max_tokens": args.max_tokens, "agent_rounds": args.agent_rounds}
    async with flexlearn.Agents(flexlearn.connect(args.model, concurrency=1)) as agents:
        for slice_name, n in (("gsm8k", args.gsm8k_n), ("aime", args.aime_n)):
            task_name, path = SLICES[slice_name]
            problems = get_task(task_name).load(path)[:n]
            out[slice_name] = {
                s: await run_setting(s, problems, task_name, args, agents, library, cache) for s in settings if n
            }
    if library is not None:
        library.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--gsm8k-n", type=int, default=10)
    parser.add_argument("--aime-n", type=int, default=12)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--library", type=Path, default=None, help="Library for flex+python (learned on GSM8k).")
    parser.add_argument("--max-tokens", type=int, default=400, help="Cap on each actor reply.")
    parser.add_argument("--agent-rounds", type=int, default=2, help="Actor/critic rounds in the agent settings.")
    parser.add_argument("--work", type=Path, default=HERE / "work" / "tools")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
