"""benchmarks/native_kernels.py --other-build: two llama.cpp builds measured side by side, each child process
loading the build it was pointed at."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import llama_cpp
import pytest

from tests.support.bench import BENCHMARKS, benchmark_module


def test_the_cpu_is_named_with_the_extensions_builds_differ_by() -> None:
    cpu = benchmark_module("native_kernels").cpu()
    assert cpu["name"]
    assert set(cpu["flags"]) <= {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"}


@pytest.mark.slow
def test_other_build_runs_its_children_on_the_build_it_names(tmp_path: Path) -> None:
    # "Another build": this environment's llama_cpp package, reached through a different folder.
    other = tmp_path / "other"
    other.mkdir()
    (other / "llama_cpp").symlink_to(Path(llama_cpp.__file__).parent, target_is_directory=True)
    command = [sys.executable, str(BENCHMARKS / "native_kernels.py"), "--model", "local:gemma3-270m"]
    done = subprocess.run(
        [*command, "--rounds", "1", "--other-build", str(other)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    out = json.loads(done.stdout)
    [this], [that] = out["runs"]["this_build"], out["runs"]["other_build"]
    assert Path(that["build"]) == other / "llama_cpp"  # the child imported the package it was pointed at
    assert Path(this["build"]) == Path(llama_cpp.__file__).parent
    assert set(out["ratio_other_over_this"]) == {"prompt_tok_s", "gen_tok_s"}
    assert all(v > 0 for v in out["ratio_other_over_this"].values())
