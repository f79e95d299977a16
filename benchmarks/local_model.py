"""Benchmark of the embedded local model backend (`local:` URIs). Prints ONE JSON object.

    python benchmarks/local_model.py [--repeats 3] [--model /path/x.gguf]

Each measurement is a function `measure_<name>(ctx) -> dict` registered in MEASUREMENTS; its keys are merged
into the output. The flexlearn path and the raw llama_cpp path run the same prompts on the same loaded `Llama`
object, interleaved, so that the ratio flexlearn/raw isolates the wrapper's cost (worker thread, tokenizing,
grammar cache) from the noise of a shared machine. Ratios are of medians; goal >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flexlearn.models.base import GenerationOptions, Message, Prompt
from flexlearn.models.local import LocalModel

PLAIN_PROMPT = "Q: Tell me about the history of the city of Paris.\nA:"
PLAIN_TOKENS = 64

SHORT_PROMPT = (
    "Q: What is the past tense of 'sing'?\nA: sang\n\n"
    "Q: What is the past tense of 'drink'?\nA: drank\n\n"
    "Q: Describe the word 'go' in one sentence.\nA:"
)
SHORT_TOKENS = 20

GRAMMAR_PROMPT = (
    "Question: What is the past tense of 'go'?\nProposed answer: goed\n"
    "Judge the proposed answer. Reply as JSON with a verdict and a lesson.\n"
)
GRAMMAR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correct": {"type": "boolean"},
        "lesson": {"type": "string", "minLength": 160, "maxLength": 200},  # ~60 tokens in all
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 8},
    },
    "required": ["correct", "lesson", "tags"],
}
GRAMMAR_TOKENS = 60


@dataclass
class Ctx:
    model: LocalModel
    llm: Any  # the shared llama_cpp.Llama
    repeats: int
    loop: asyncio.AbstractEventLoop
    notes: dict[str, Any] = field(default_factory=dict)


def _flex(ctx: Ctx, prompt: Prompt, max_tokens: int, schema: dict[str, Any] | None = None) -> tuple[float, int]:
    reply = ctx.loop.run_until_complete(
        ctx.model.generate(prompt, schema=schema, options=GenerationOptions(max_tokens=max_tokens, temperature=0.0))
    )
    return reply.latency_s, reply.usage.completion_tokens


def _raw(ctx: Ctx, text: str, max_tokens: int, stop: list[str] | None = None, grammar: Any = None):
    t0 = time.perf_counter()
    out = ctx.llm.create_completion(text, max_tokens=max_tokens, temperature=0.0, stop=stop, grammar=grammar)
    return time.perf_counter() - t0, out["usage"]["completion_tokens"]


def _compare(ctx: Ctx, run_flex: Callable[[], tuple[float, int]], run_raw: Callable[[], tuple[float, int]]):
    """Interleave flex and raw runs; medians of tokens/s and of seconds."""
    run_flex(), run_raw()  # warm-up: caches, first-call costs
    flex, raw = [], []
    for _ in range(ctx.repeats):
        flex.append(run_flex())
        raw.append(run_raw())
    f_tps = statistics.median(n / s for s, n in flex)
    r_tps = statistics.median(n / s for s, n in raw)
    return {
        "flex_tok_s": round(f_tps, 2),
        "raw_tok_s": round(r_tps, 2),
        "ratio": round(f_tps / r_tps, 3),
        "flex_s": round(statistics.median(s for s, _ in flex), 3),
        "raw_s": round(statistics.median(s for s, _ in raw), 3),
        "tokens": flex[-1][1],
    }


# --- measurements -------------------------------------------------------------------------------------------


_RAW_LOAD = """
import sys, time
from llama_cpp import Llama
t0 = time.perf_counter()
Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=int(sys.argv[3]), verbose=False)
print(time.perf_counter() - t0)
"""


def measure_load(ctx: Ctx) -> dict[str, Any]:
    """Load time through LocalModel (first use, in this process) and of a bare `Llama(...)` in a fresh process
    (a second model in this one would inflate the peak RSS)."""
    out = subprocess.run(
        [sys.executable, "-c", _RAW_LOAD, ctx.llm.model_path, str(ctx.model.n_ctx), str(ctx.model.n_threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    raw_s = float(out.stdout.strip().splitlines()[-1])
    return {
        "model": ctx.model.name,
        "n_threads": ctx.model.n_threads,
        "n_ctx": ctx.model.n_ctx,
        "load_s_flex_first_use": ctx.notes["first_load_s"],
        "load_s_raw": round(raw_s, 3),
    }


def measure_plain(ctx: Ctx) -> dict[str, Any]:
    prompt = Prompt(messages=[Message("user", PLAIN_PROMPT)], completion=PLAIN_PROMPT)
    res = _compare(ctx, lambda: _flex(ctx, prompt, PLAIN_TOKENS), lambda: _raw(ctx, PLAIN_PROMPT, PLAIN_TOKENS))
    return {"plain": res}


def measure_short_completion(ctx: Ctx) -> dict[str, Any]:
    """Latency of one ~20-token base-model completion with a short few-shot prompt (the actor's typical call)."""
    prompt = Prompt(messages=[], completion=SHORT_PROMPT)
    res = _compare(ctx, lambda: _flex(ctx, prompt, SHORT_TOKENS), lambda: _raw(ctx, SHORT_PROMPT, SHORT_TOKENS))
    return {"short_completion_20tok": res}


def measure_grammar(ctx: Ctx) -> dict[str, Any]:
    from llama_cpp import LlamaGrammar

    t0 = time.perf_counter()
    grammar = LlamaGrammar.from_json_schema(json.dumps(GRAMMAR_SCHEMA), verbose=False)
    compile_s = time.perf_counter() - t0
    prompt = Prompt(messages=[], completion=GRAMMAR_PROMPT)
    res = _compare(
        ctx,
        lambda: _flex(ctx, prompt, GRAMMAR_TOKENS, GRAMMAR_SCHEMA),
        lambda: _raw(ctx, GRAMMAR_PROMPT, GRAMMAR_TOKENS, grammar=grammar),
    )
    return {"grammar_json_60tok": res, "grammar_compile_s": round(compile_s, 4)}


def measure_concurrency(ctx: Ctx) -> dict[str, Any]:
    """4 concurrent callers through the single worker thread vs the same 4 calls one after another."""
    prompt = Prompt(messages=[], completion=SHORT_PROMPT)
    opts = GenerationOptions(max_tokens=SHORT_TOKENS)

    async def gather() -> None:
        await asyncio.gather(*(ctx.model.generate(prompt, options=opts) for _ in range(4)))

    t0 = time.perf_counter()
    ctx.loop.run_until_complete(gather())
    concurrent_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(4):
        _raw(ctx, SHORT_PROMPT, SHORT_TOKENS)
    serial_raw_s = time.perf_counter() - t0
    return {"concurrent4_s": round(concurrent_s, 3), "serial4_raw_s": round(serial_raw_s, 3)}


def measure_loop(ctx: Ctx) -> dict[str, Any]:
    """Seconds per learned problem (explore + distil + update) and per evaluated problem in each mode, on the
    shipped demo slice with the demo's settings, through flexlearn's own loops."""
    import tempfile

    import flexlearn
    from flexlearn import Agents
    from flexlearn.demo import plan
    from flexlearn.library.store import Library
    from flexlearn.models.middleware import Meter, build_stack

    demo = plan("word_facts", train_size=6, test_size=6)
    meter = Meter()
    agents = Agents.single(build_stack(ctx.model, max_concurrency=1, retry=None, meter=meter), meter)
    with tempfile.TemporaryDirectory() as tmp, Library.open(f"{tmp}/bench.flexlib") as lib:
        t0 = time.perf_counter()
        ctx.loop.run_until_complete(
            flexlearn.alearn(demo.train, task=demo.task, agents=agents, library=lib, **demo.learn.values())
        )
        learn_s = time.perf_counter() - t0
        results = ctx.loop.run_until_complete(
            flexlearn.aevaluate(
                demo.test, task=demo.task, agents=agents, library=lib, train=demo.train, **demo.eval.values()
            )
        )
    return {
        "seconds_per_learned_problem": round(learn_s / len(demo.train), 2),
        "seconds_per_evaluated_problem": {r.mode: round(r.seconds / r.n, 2) for r in results},
    }


def measure_peak_rss(ctx: Ctx) -> dict[str, Any]:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_rss_mib": round(kb / 1024, 1)}


# Order matters only in that peak RSS goes last. Add measurements (e.g. seconds per learned problem) here.
MEASUREMENTS: list[Callable[[Ctx], dict[str, Any]]] = [
    measure_load,
    measure_plain,
    measure_short_completion,
    measure_grammar,
    measure_concurrency,
    measure_loop,
    measure_peak_rss,
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="a GGUF path (default: the embedded model)")
    args = ap.parse_args(argv)

    model = LocalModel.from_uri_path(args.model)
    t0 = time.perf_counter()
    llm = model.llama()
    loop = asyncio.new_event_loop()
    ctx = Ctx(model=model, llm=llm, repeats=args.repeats, loop=loop)
    ctx.notes["first_load_s"] = round(time.perf_counter() - t0, 3)

    result: dict[str, Any] = {"python": sys.version.split()[0]}
    try:
        import llama_cpp

        result["llama_cpp_python"] = llama_cpp.__version__
    except Exception:
        pass
    t_all = time.perf_counter()
    for measure in MEASUREMENTS:
        result.update(measure(ctx))
    result["bench_s"] = round(time.perf_counter() - t_all, 1)
    loop.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
