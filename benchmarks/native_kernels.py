"""What the safe way of loading a local model costs: llama.cpp with and without its extra buffer types (AMX and
repacked weights), prompt processing and generation tokens/s. Prints ONE JSON object.

    python benchmarks/native_kernels.py                                  # local:qwen2.5-coder-1.5b, 3 rounds
    python benchmarks/native_kernels.py --model local:gemma3-270m --rounds 5
    python benchmarks/native_kernels.py --other-build DIR   # this build against another (DIR/llama_cpp)

`--other-build` compares two llama.cpp builds instead: DIR holds another build's `llama_cpp` package (an unpacked
wheel, `python -m zipfile -e llama_cpp_python-*.whl DIR`), for instance a native build (AVX-512 where the CPU has
it) against the portable one; both load with llama.cpp's default buffer types.

`native_check` loads without the extra buffer types only where the default faults (AMX that the CPU reports but
cannot run); this measures what that costs on the machine it runs on. Each measurement runs in its own child
process (a fresh load, one thread, as flexlearn runs it), the two settings alternating, so a busy machine weighs on
both alike; compare the medians' ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPT_WORDS = 600
GEN_TOKENS = 128


def child(path: str, extra_bufts: bool) -> dict[str, Any]:
    from llama_cpp import Llama

    from flexlearn.models.native_check import model_params, probe_prompt

    with model_params(extra_bufts=extra_bufts):
        t0 = time.perf_counter()
        llm = Llama(model_path=path, n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
        load_s = time.perf_counter() - t0
    tokens = llm.tokenize(probe_prompt(PROMPT_WORDS).encode(), add_bos=True)
    t0 = time.perf_counter()
    llm.eval(tokens)
    prompt_s = time.perf_counter() - t0
    llm.reset()
    short = llm.tokenize(b"Write a long story about a lighthouse keeper.", add_bos=True)
    llm.eval(short)
    t0 = time.perf_counter()
    made = 0
    for _token in llm.generate(short, temp=0.0, reset=False):
        made += 1
        if made >= GEN_TOKENS:
            break
    gen_s = time.perf_counter() - t0
    import llama_cpp

    return {
        "load_s": load_s,
        "prompt_tok_s": len(tokens) / prompt_s,
        "gen_tok_s": made / gen_s,
        "build": str(Path(llama_cpp.__file__).parent),
    }


def cpu() -> dict[str, Any]:
    """The CPU's name and the vector extensions llama.cpp's builds differ by, from /proc/cpuinfo where there is one."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return {"name": name, "flags": [f for f in wanted if f in flags]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local:qwen2.5-coder-1.5b")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--other-build", type=str, default=None, help="a folder holding another build's llama_cpp")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "EXTRA_BUFTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "1")))
        return

    from flexlearn.models.local import LocalModel
    from flexlearn.models.uri import from_uri

    model = from_uri(args.model)
    assert isinstance(model, LocalModel)
    verdict = model.check_native()
    path = model.llama_path()
    # (name, extra buffer types, PYTHONPATH ahead of this environment's packages)
    settings = [("default", "1", ""), ("without_extra_bufts", "0", "")]
    if args.other_build:
        settings = [("this_build", "1", ""), ("other_build", "1", str(Path(args.other_build).resolve()))]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in settings}
    for _ in range(args.rounds):
        for name, flag, extra_path in settings:
            if flag == "1" and not verdict.extra_bufts:
                continue  # it faults here: nothing to measure
            env = dict(os.environ)
            if extra_path:
                env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH", "")) if p)
            done = subprocess.run(
                [sys.executable, __file__, "--child", path, flag], capture_output=True, text=True, check=True, env=env
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            runs[name].append(row)

    def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
        keys = [k for k in rows[0] if isinstance(rows[0][k], float)] if rows else []
        return {k: round(statistics.median(r[k] for r in rows), 2) for k in keys}

    out: dict[str, Any] = {
        "model": args.model,
        "cpu": cpu(),
        "native_check": {"extra_bufts": verdict.extra_bufts, "reason": verdict.reason},
        "prompt_tokens": PROMPT_WORDS,
        "generated_tokens": GEN_TOKENS,
        "rounds": args.rounds,
        "median": {name: medians(rows) for name, rows in runs.items()},
        "runs": runs,
    }
    if args.other_build:
        out["other_build"] = args.other_build
        this, other = out["median"]["this_build"], out["median"]["other_build"]
        if this and other:
            out["ratio_other_over_this"] = {k: round(other[k] / this[k], 3) for k in ("prompt_tok_s", "gen_tok_s")}
    else:
        default, safe = out["median"]["default"], out["median"]["without_extra_bufts"]
        if default and safe:
            out["ratio_without_over_default"] = {
                k: round(safe[k] / default[k], 3) for k in ("prompt_tok_s", "gen_tok_s")
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
