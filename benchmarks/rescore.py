"""How much of an efficacy difference is the answer line? Rescore the replies an efficacy run cached, once by the
task's own rule and once leniently, and print ONE JSON object with each mode's accuracy, calls and tokens per item
and per-category counts, and flex's paired difference from every other mode under both readings: the efficacy
table rebuilt from the work folder alone, whatever the code has become since the items were generated.

The lenient reading takes a reply the task finds no answer in (no "Final answer:" line, no `\\boxed{}`) and scores
the last number it writes, as a sentence such as "Therefore, the Working Capital is $250,000.00." would be read
by a person. Nothing is generated: it reads the work folder's `items.jsonl` (each cached reply's last 3,000
characters, where the answer is).

    python benchmarks/rescore.py --work benchmarks/results/efficacy-qwen2.5-coder-1.5b-formula/base --task formula

When a mode has items under several cache keys (an earlier library, another prompt), the key with the most of
the test problems is used, the later one on a tie; `--key MODE=PREFIX` picks one. The ace row is read from the
work folder's `ace/items.jsonl` (what `ace_peer.py` wrote), its final answer scored as the reply. Every figure is
over the problems all the modes shown answered (`n`): `--modes` leaves a mode out, e.g. one still running.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from efficacy import TASKS, default_work, lenient_reply

from flexlearn.loop.stats import paired
from flexlearn.tasks import get_task


def ace_items(path: Path) -> list[dict[str, Any]]:
    """The ace row's items as cached items of mode "ace": the final answer ACE's agent gave is the reply (ACE keeps
    no other), with its calls and tokens."""
    rows = []
    for row in read_jsonl(path):
        rows.append(
            {
                "key": "ace",
                "mode": "ace",
                "problem_id": row["problem_id"],
                "reply": str(row.get("final_answer") or ""),
                **{k: row[k] for k in ("calls", "prompt_tokens", "completion_tokens", "seconds") if k in row},
            }
        )
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of `path`, a line cut short by a crash skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def pick_items(items: Sequence[dict[str, Any]], ids: set[str], chosen: dict[str, str]) -> dict[str, dict[str, dict]]:
    """Per mode, the items (by problem id) of one cache key: `chosen[mode]`'s prefix, else the key covering most
    of `ids`, the later one on a tie."""
    by_key: dict[str, dict[str, dict[str, dict]]] = {}
    for item in items:
        if item["problem_id"] in ids and "reply" in item:
            by_key.setdefault(item["mode"], {}).setdefault(item["key"], {})[item["problem_id"]] = item
    picked = {}
    for mode, keys in by_key.items():
        if mode in chosen:
            matching = [k for k in keys if k.startswith(chosen[mode])]
            if len(matching) != 1:
                raise SystemExit(f"--key {mode}={chosen[mode]} matches {len(matching)} cache keys of {mode}")
            picked[mode] = keys[matching[0]]
        else:
            # Keys are in file order; max() keeps the first of equals, so read them backwards.
            picked[mode] = keys[max(reversed(list(keys)), key=lambda k: len(keys[k]))]
    return picked


def seconds_per_item(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Wall seconds an item, over the items that recorded them (caches written before items did record none),
    and how many did: `{}` when none did."""
    timed = [float(i["seconds"]) for i in items if float(i.get("seconds") or 0) > 0]
    return {"seconds_per_item": round(sum(timed) / len(timed), 1), "timed_items": len(timed)} if timed else {}


def rescore(task: Any, problems: dict[str, Any], picked: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """Accuracy per mode and flex's paired differences, under the task's rule and leniently, on the problems
    every mode answered."""
    common = sorted(set.intersection(*(set(items) for items in picked.values()))) if picked else []
    out: dict[str, Any] = {"n": len(common), "modes": {}, "paired": {}, "by_category": {}}
    correct: dict[str, dict[str, list[bool]]] = {"strict": {}, "lenient": {}}
    for mode, items in picked.items():
        strict = [task.score(items[p]["reply"], problems[p]).correct for p in common]
        lenient = [task.score(lenient_reply(task, items[p]["reply"]), problems[p]).correct for p in common]
        correct["strict"][mode], correct["lenient"][mode] = strict, lenient
        out["modes"][mode] = {
            "key": next(iter(items.values()))["key"],
            "strict": sum(strict),
            "lenient": sum(lenient),
            "no_answer": sum(task.extract_answer(items[p]["reply"]) is None for p in common),
            **{
                f"{k}_per_item": round(sum(items[p].get(k, 0) for p in common) / len(common), 2) if common else 0.0
                for k in ("calls", "prompt_tokens", "completion_tokens")
            },
            **seconds_per_item([items[p] for p in common]),
        }
        for p, right in zip(common, strict, strict=True):
            row = out["by_category"].setdefault(problems[p].category or "", {}).setdefault(mode, [0, 0])
            row[0] += int(right)
            row[1] += 1
    out["by_category"] = dict(sorted(out["by_category"].items()))
    if "flex" in picked:
        for reading, by_mode in correct.items():
            out["paired"][reading] = {
                f"flex-{mode}": paired(by_mode["flex"], by_mode[mode]) for mode in by_mode if mode != "flex"
            }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=tuple(TASKS), default="gsm8k")
    parser.add_argument("--test", type=Path, default=None, help="the test file the run evaluated [default: the task's]")
    parser.add_argument("--work", type=Path, default=None, help="the run's work folder [default: efficacy.py's]")
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b", help="for the default work folder")
    parser.add_argument("--key", action="append", default=[], metavar="MODE=PREFIX", help="the cache key of a mode")
    parser.add_argument("--modes", default=None, help="comma-separated modes to show [default: every mode cached]")
    args = parser.parse_args(argv)
    task = get_task(args.task)
    problems = {p.id: p for p in task.load(args.test or TASKS[args.task][1])}
    work = args.work or default_work(args.model, args.task)
    path = work / "items.jsonl"
    if not path.exists():
        parser.error(f"no cached items at {path}")
    items = read_jsonl(path)
    if (work / "ace" / "items.jsonl").exists():
        items += ace_items(work / "ace" / "items.jsonl")
    chosen = {}
    for spec in args.key:
        mode, sep, prefix = spec.partition("=")
        if not sep or not prefix:
            parser.error(f"--key takes MODE=PREFIX, not {spec!r}")
        chosen[mode] = prefix
    picked = pick_items(items, set(problems), chosen)
    if args.modes is not None:
        wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
        missing = [m for m in wanted if m not in picked]
        if missing:
            parser.error(f"no cached items of {', '.join(missing)} in {work}")
        picked = {m: picked[m] for m in wanted}
    json.dump(rescore(task, problems, picked), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
