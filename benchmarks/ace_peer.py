"""The peer, run as its users run it: kayba's ACE (`pip install ace-framework==0.7.1`, the newest release that
installs on Python 3.11) adapts a skillbook offline on training problems and answers test problems with it,
against any OpenAI-compatible endpoint. Writes one JSON line per answered test problem to WORK/items.jsonl.

    /path/to/ace-venv/bin/python benchmarks/ace_peer.py --base-url http://127.0.0.1:8000/v1 \\
        --model qwen2.5-coder-1.5b --train train.jsonl --test test.jsonl --work /tmp/ace-work

`--train` and `--test` are JSONL of {"id", "question", "answer"}: the problems exactly as the caller loaded them
(efficacy.py writes them from its own slices, so both sides name each problem alike).

It imports nothing of flexlearn (ACE and flexlearn live in separate environments: ACE pulls in litellm,
instructor and browser-use). `benchmarks/efficacy.py --ace-python` starts `flex serve` for the same GGUF, runs this
script, and scores the final answers it wrote with the task's own checker, as the `ace` row.

Configured from ACE's own documentation (the docstrings of `OfflineACE`, `Agent`, `Reflector`, `SkillManager` and
`LiteLLMClient`): one `LiteLLMClient` for the three roles, `OfflineACE(...).run(samples, environment, epochs=1)`,
then `Agent.generate(question=..., context=..., skillbook=...)` with the learned skillbook. The environment is the
one thing a user writes: here it applies the benchmark's rule from the ACE paper's own repository (commas removed,
equal as floats) and answers "Correct!" or "Incorrect. Expected: X", as ACE's `SimpleEnvironment` does.

One thing of ACE's cannot run as shipped against a model that copies its prompt's example: ACE 0.7.1's skill
manager prompt shows the reply JSON without the "update" key its reply model requires (its own worked example
fails `SkillManagerOutput` validation), so every skill manager call fails and nothing is learned. With
`--skill-manager-prompt update-wrapped` the same prompt shows that JSON under "update", passed through the
`prompt_template` parameter `SkillManager` documents; ACE's code is unchanged. See `update_wrapped`.

Resumable: the skillbook is saved after every training problem with the count done, and every answered test
problem is appended as it finishes; run the same command again to continue.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ace_correct(prediction: str, target: str) -> bool:
    """The rule of the ACE paper's finance evaluation: commas removed, equal as floats."""
    try:
        return float(str(prediction).replace(",", "").strip()) == float(str(target).replace(",", ""))
    except ValueError:
        return False


# The key under litellm's metadata that names the test problem a call answers.
ITEM_KEY = "flexlearn_benchmark_item"


class Usage:
    """Calls and tokens of every LLM call ACE makes, through litellm's success callback (which litellm runs on a
    thread of its own), in total and per test problem: a test problem's calls carry its id in litellm's metadata
    (`Agent.generate` passes its keyword arguments on to the LLM call)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = dict.fromkeys(("calls", "prompt_tokens", "completion_tokens"), 0)
        self.by_item: dict[str, dict[str, int]] = {}

    def __call__(self, kwargs: Any, response: Any, start: Any, end: Any) -> None:
        usage = getattr(response, "usage", None)
        counts = {
            "calls": 1,
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        }
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or kwargs.get("metadata") or {}
        item = metadata.get(ITEM_KEY)
        with self.lock:
            rows = [self.total] + ([self.by_item.setdefault(str(item), dict.fromkeys(counts, 0))] if item else [])
            for row in rows:
                for k, v in counts.items():
                    row[k] += v

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.total)

    def of_item(self, item: str) -> dict[str, int]:
        with self.lock:
            return dict(self.by_item.get(item, dict.fromkeys(self.total, 0)))


def update_wrapped(prompt: str) -> str:
    """ACE's skill manager prompt with the JSON it asks for nested under "update".

    ACE 0.7.1's skill manager prompts (every version) show the reply as {"reasoning", "operations",
    "quality_metrics"} at the top level, while the model the reply is validated against, `SkillManagerOutput`,
    requires those under "update" (instructor adds that schema to the request). A model that follows the prompt's
    example, as a 1.5B does, fails validation on every try and ACE learns nothing. This moves the shown JSON (the
    format and the worked example) under "update" and changes nothing else; it is passed through the
    `prompt_template` parameter `SkillManager` documents."""
    opening, closing = '{{\n  "reasoning": "', '  ],\n  "quality_metrics": {{'
    if prompt.count(opening) != 2 or prompt.count(closing) != 2:
        raise SystemExit("this ace-framework's skill manager prompt is not the one update_wrapped knows (0.7.1)")
    prompt = prompt.replace(opening, '{{\n  "update": {{\n  "reasoning": "')
    return prompt.replace(closing, '  ]\n  }},\n  "quality_metrics": {{')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--base-url",
        required=True,
        nargs="+",
        help="the endpoint; several (servers of the same model) answer the test problems in parallel, one each",
    )
    parser.add_argument("--model", required=True, help="the served model's name")
    parser.add_argument("--train", type=Path, required=True, help="JSONL of id, question, answer")
    parser.add_argument("--test", type=Path, required=True, help="JSONL of id, question, answer")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, default=2048, help="ACE's LiteLLMClient default")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument(
        "--skill-manager-prompt",
        choices=("default", "update-wrapped"),
        default="default",
        help="ACE's own, or the same with its JSON nested under the key its reply model requires (see update_wrapped)",
    )
    parser.add_argument(
        "--learn-only",
        action="store_true",
        help="stop after learning (efficacy.py serves learning and answering with different servers)",
    )
    args = parser.parse_args()

    # Offline: litellm would otherwise try to fetch its model price list from the internet at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from ace import Agent, OfflineACE, Reflector, Sample, Skillbook, SkillManager
    from ace.adaptation import EnvironmentResult, TaskEnvironment
    from ace.llm_providers import LiteLLMClient
    from ace.roles import SKILL_MANAGER_PROMPT

    class FormulaEnvironment(TaskEnvironment):
        def evaluate(self, sample: Any, agent_output: Any) -> Any:
            correct = ace_correct(agent_output.final_answer, sample.ground_truth)
            return EnvironmentResult(
                feedback="Correct!" if correct else f"Incorrect. Expected: {sample.ground_truth}",
                ground_truth=sample.ground_truth,
                metrics={"correct": 1.0 if correct else 0.0},
            )

    usage = Usage()
    litellm.success_callback = [usage]
    os.environ.setdefault("OPENAI_API_KEY", "none")  # a local server needs none; litellm wants one set
    clients = [
        LiteLLMClient(model=f"openai/{args.model}", api_base=url, max_tokens=args.max_tokens, timeout=args.timeout)
        for url in args.base_url
    ]
    client = clients[0]  # learning is sequential, as OfflineACE runs it
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    book_path, state_path, items_path = work / "skillbook.json", work / "state.json", work / "items.jsonl"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"trained": 0, "phases": {}}
    skillbook = Skillbook.load_from_file(str(book_path)) if book_path.exists() else Skillbook()

    def save_state() -> None:
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, state_path)

    def add_phase(name: str, seconds: float, before: dict[str, int]) -> None:
        now = usage.snapshot()
        row = state["phases"].setdefault(name, {"seconds": 0.0, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
        row["seconds"] += seconds
        for k in now:
            row[k] += now[k] - before[k]

    train = _rows(args.train)
    if state.setdefault("skill_manager_prompt", args.skill_manager_prompt) != args.skill_manager_prompt:
        raise SystemExit(f"{work} was learned with --skill-manager-prompt {state['skill_manager_prompt']}")
    if args.skill_manager_prompt == "update-wrapped":
        skill_manager = SkillManager(client, prompt_template=update_wrapped(SKILL_MANAGER_PROMPT))
    else:
        skill_manager = SkillManager(client)
    ace = OfflineACE(skillbook=skillbook, agent=Agent(client), reflector=Reflector(client), skill_manager=skill_manager)
    env = FormulaEnvironment()
    for row in train[state["trained"] :]:
        started, before = time.monotonic(), usage.snapshot()
        results = ace.run([Sample(question=row["question"], ground_truth=row["answer"])], env, epochs=1)
        ace.skillbook.save_to_file(str(book_path))
        state["trained"] += 1
        state.setdefault("train_failed", 0)
        state["train_failed"] += 0 if results else 1
        # What ACE's agent answered while learning, as flex's exploration records whether it solved a problem.
        state.setdefault("train_answers", []).append(
            {
                "problem_id": row["id"],
                "final_answer": str(results[0].agent_output.final_answer) if results else None,
                "correct": bool(results) and bool(results[0].environment_result.metrics.get("correct")),
            }
        )
        add_phase("learn", time.monotonic() - started, before)
        save_state()
        print(f"ace learn {state['trained']}/{len(train)} skills {len(ace.skillbook.skills())}", file=sys.stderr)

    if args.learn_only:
        print(json.dumps({"skills": len(ace.skillbook.skills()), **state}))
        return

    done = set()
    if items_path.exists():
        for line in items_path.read_text().splitlines():
            try:
                done.add(json.loads(line)["problem_id"])
            except (ValueError, KeyError):
                continue
    free_agents = [Agent(c) for c in clients]  # one per server: a worker holds one while it answers
    test = [r for r in _rows(args.test) if r["id"] not in done]
    lock = threading.Lock()
    answered = 0

    def answer_one(row: dict[str, Any]) -> None:
        nonlocal answered
        started = time.monotonic()
        with lock:
            agent = free_agents.pop()
        try:
            output = agent.generate(
                question=row["question"], context="", skillbook=ace.skillbook, metadata={ITEM_KEY: row["id"]}
            )
            answer, reasoning, error = str(output.final_answer), str(output.reasoning), None
        except Exception as e:  # a reply instructor could not validate: the item counts as wrong
            answer, reasoning, error = "", "", f"{type(e).__name__}: {str(e)[:300]}"
        finally:
            with lock:
                free_agents.append(agent)
        item = {
            "problem_id": row["id"],
            "final_answer": answer,
            "correct_ace_rule": ace_correct(answer, row["answer"]),
            "error": error,
            "seconds": time.monotonic() - started,
            "reasoning": reasoning[-2000:],
        }
        time.sleep(0.5)  # the success callback of the item's last call runs on litellm's thread
        item.update(usage.of_item(row["id"]))
        with lock:  # one writer at a time: every line whole, appended as its item finishes
            with items_path.open("a") as f:
                f.write(json.dumps(item) + "\n")
            answered += 1
            print(f"ace eval {answered}/{len(test)}", file=sys.stderr)

    started, before = time.monotonic(), usage.snapshot()
    try:
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            for future in [pool.submit(answer_one, row) for row in test]:
                future.result()
    finally:  # the phase's calls and tokens are counted for the items answered, also when interrupted
        time.sleep(1)  # litellm runs its success callbacks on a thread of its own: let the last ones land
        add_phase("eval", time.monotonic() - started, before)
        save_state()
    summary = {"skills": len(ace.skillbook.skills()), **state}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
