"""Feasibility probe: given the right answer, does the 1.5B write a worked solution that reaches it?"""

import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

import flexlearn
from flexlearn.agents.relation import scale_relation
from flexlearn.models.base import GenerationOptions, Message, Prompt
from flexlearn.tasks import get_task

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
t = get_task("formula")
train = {p.id: p for p in t.load(Path("/work/main/benchmarks/data/finance_formula/train.jsonl"))[:60]}
c = sqlite3.connect(
    "file:/work/main/benchmarks/results/efficacy-qwen2.5-coder-1.5b-formula/r1/train60.flexlib?mode=ro", uri=True
)
rows = c.execute("select problem_id, trajectory from run_problems where status='unsolved' order by rowid").fetchall()
ids = sys.argv[2].split(",") if len(sys.argv) > 2 else None
rows = [r for r in rows if ids is None or r[0] in ids][:N]
USER = (
    "{question}\n\n"
    "An earlier attempt at this problem gave {wrong} as its answer, which is wrong. "
    "The right answer is {right}{relation}.\n"
    "Write the solution again, step by step, so that it reaches the right answer: find the step where the earlier "
    "attempt went wrong and do it right. Write it as a worked solution of the problem that a student could follow, "
    "without mentioning the earlier attempt or that the answer was given to you."
)


async def main():
    model = flexlearn.connect("local:qwen2.5-coder-1.5b")
    out = Path("/root/hindsight/probe.jsonl").open("a")  # noqa: SIM115 (a probe: appended as it goes)
    for pid, traj in rows:
        p = train[pid]
        steps = json.loads(traj)["steps"]
        wrong = steps[-1]["extracted"] or "no number"
        rel = scale_relation(wrong, p.answer)
        system = (
            Path("/work/main/src/flexlearn/prompts/actor_system.txt")
            .read_text()
            .replace("{{answer_format}}", t.answer_format)
            .strip()
        )
        user = USER.format(question=t.render(p), wrong=wrong, right=p.answer, relation=f" ({rel})" if rel else "")
        t0 = time.time()
        reply = await model.generate(
            Prompt([Message("system", system), Message("user", user)]), options=GenerationOptions(temperature=0.0)
        )
        s = t.score(reply.text, p)
        row = {
            "problem_id": pid,
            "category": p.category,
            "wrong": wrong,
            "right": p.answer,
            "extracted": s.extracted,
            "correct": s.correct,
            "seconds": round(time.time() - t0, 1),
            "reply": reply.text,
        }
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(pid, p.category, wrong, p.answer, "->", s.extracted, s.correct, row["seconds"], flush=True)


asyncio.run(main())
