"""Does llama.cpp's CPU code run on this machine? A one-time check in a child process, before a local model is used.

llama.cpp compiled natively on a CPU that reports AMX multiplies matrices with AMX tile instructions, through an
"extra buffer type" that holds the weights in AMX's layout. On hosts that report AMX without enabling its register
state (some hypervisors and sandboxes), the first prompt of a few hundred tokens dies with SIGILL in
`ggml_backend_amx_mul_mat`, taking the whole Python process with it: no exception, no message, a half-written run.
A build made on another machine can do the same with any instruction this CPU lacks.

Python cannot catch either, so the first time a model file is used with a given llama.cpp build on a given CPU, a
child process loads it and evaluates a long prompt (`PROBE_TOKENS`), first as llama.cpp would by default:

- it runs: the build is fine here, nothing changes;
- it dies by a signal: the child tries again without llama.cpp's extra buffer types (`use_extra_bufts=False`,
  which keeps the AMX kernel and weight repacking out); if that runs, every load in this process uses it, and
  the choice is remembered;
- both die: `NativeCrash`, a `ConfigError` whose one line names the fix (a portable rebuild).

The verdict is cached in `<cache dir>/native-check.json`, keyed by the llama.cpp library file, the CPU and the
model file, so the check costs one model load and a prompt once per machine and model. `FLEX_LOCAL_EXTRA_BUFTS`
skips it: `on` keeps llama.cpp's default, `off` always loads without the extra buffer types.
A child that fails in any other way (a file that is not a model, memory) says nothing about the CPU: nothing is
cached and the ordinary load reports the error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexlearn.errors import ConfigError
from flexlearn.models.embedded import cache_dir

log = logging.getLogger("flexlearn")

PROBE_TOKENS = 700  # the fault appears from a few hundred tokens of prompt; 2-token prompts run
PROBE_TIMEOUT_S = 600.0
ENV = "FLEX_LOCAL_EXTRA_BUFTS"
# The module the check runs as its child. No CPU of the test machines faults, so the tests name one that does.
CHILD_ENV = "FLEX_NATIVE_CHECK_CHILD"
CHILD_MODULE = "flexlearn.models.native_check"
# What a user runs to replace a build that cannot run here: llama.cpp for the x86-64 features nearly every CPU of
# the last decade has, without the native detection that picks up AMX or AVX-512.
PORTABLE_FLAGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
REBUILD_HINT = f'CMAKE_ARGS="{PORTABLE_FLAGS}" pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python'


class NativeCrash(ConfigError):
    """llama.cpp's CPU code crashes on this machine, with or without its extra buffer types."""


@dataclass(frozen=True)
class Verdict:
    """How to load models with this build on this CPU. `checked` is False when nothing could be concluded."""

    extra_bufts: bool
    checked: bool = True
    reason: str = ""


_LOCK = threading.Lock()
_VERDICTS: dict[str, Verdict] = {}


def verdict(model_path: str) -> Verdict:
    """How `model_path` must be loaded here: from the environment, the in-process or on-disk cache, or a probe.
    Raises `NativeCrash` when llama.cpp cannot run this model on this CPU at all."""
    forced = _forced()
    if forced is not None:
        return forced
    key = _key(model_path)
    with _LOCK:
        known = _VERDICTS.get(key) or _read_cached(key)
        if known is None:
            known = _probe_both(model_path)
            if known.checked:
                _write_cached(key, known)
        _VERDICTS[key] = known
    if not known.extra_bufts:
        log.debug("local model %s loads without llama.cpp's extra buffer types: %s", model_path, known.reason)
    return known


def _forced() -> Verdict | None:
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ("on", "1", "true", "yes"):
        return Verdict(extra_bufts=True, reason=f"{ENV}={raw}")
    if raw in ("off", "0", "false", "no"):
        return Verdict(extra_bufts=False, reason=f"{ENV}={raw}")
    raise ConfigError(f"{ENV} must be on, off or auto, got {raw!r}")


def _probe_both(model_path: str) -> Verdict:
    """Probe with llama.cpp's defaults, then, if that died by a signal, without the extra buffer types."""
    code, tail = _probe(model_path, extra_bufts=True)
    if code == 0:
        return Verdict(extra_bufts=True)
    if code > 0:  # an ordinary failure (bad file, memory): nothing learned about the CPU
        log.debug("native check of %s inconclusive (exit %d): %s", model_path, code, tail)
        return Verdict(extra_bufts=True, checked=False, reason=tail)
    first = _signal_name(code)
    safe_code, safe_tail = _probe(model_path, extra_bufts=False)
    if safe_code == 0:
        reason = (
            f"llama.cpp's default CPU kernels died with {first} on a {PROBE_TOKENS}-token prompt; without its extra "
            "buffer types (AMX, repacked weights) they run"
        )
        log.warning("%s. Local models load that way on this machine (remembered in %s).", reason, _cache_file())
        return Verdict(extra_bufts=False, reason=reason)
    if safe_code > 0:
        return Verdict(extra_bufts=False, checked=False, reason=safe_tail)
    raise NativeCrash(
        f"the local model backend crashes on this CPU ({_signal_name(safe_code)} in llama.cpp's native code, "
        f"checked in a child process): llama-cpp-python was built for instructions this CPU cannot run. "
        f"Rebuild it portable: {REBUILD_HINT}"
    )


def _signal_name(code: int) -> str:
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
    return {"SIGILL": "SIGILL, an illegal instruction"}.get(name, name)


def _probe(model_path: str, *, extra_bufts: bool) -> tuple[int, str]:
    """Run the check in a child; (its exit code, negative for a signal, and the last of its stderr)."""
    child = os.environ.get(CHILD_ENV, "").strip() or CHILD_MODULE
    cmd = [sys.executable, "-m", child, model_path, "1" if extra_bufts else "0"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return 1, f"the check did not finish within {PROBE_TIMEOUT_S:.0f} s"
    except OSError as e:
        return 1, f"could not start the check: {e}"
    return done.returncode, done.stderr.strip()[-400:]


# --- loading with or without the extra buffer types -------------------------------------------------------------


@contextlib.contextmanager
def model_params(*, extra_bufts: bool) -> Iterator[None]:
    """While active, `llama_cpp.Llama(...)` loads models with `use_extra_bufts=extra_bufts`. llama-cpp-python has no
    argument for it: its `Llama` takes the model parameters from `llama_model_default_params()`, which this wraps.
    Callers hold their own load lock; nothing else in the process builds a `Llama` meanwhile."""
    if extra_bufts:
        yield
        return
    from llama_cpp import llama_cpp as bindings

    original = bindings.llama_model_default_params

    def without_extra_bufts() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = without_extra_bufts
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


# --- the cache ---------------------------------------------------------------------------------------------------


def _cache_file() -> Path:
    return cache_dir() / "native-check.json"


def _key(model_path: str) -> str:
    """What the verdict depends on: the llama.cpp build, the CPU and the model file."""
    import llama_cpp

    parts: list[Any] = [llama_cpp.__version__, platform.machine(), _cpu_identity()]
    lib_dir = Path(llama_cpp.__file__).resolve().parent / "lib"
    for lib in sorted(lib_dir.glob("*")) if lib_dir.is_dir() else []:
        with contextlib.suppress(OSError):
            st = lib.stat()
            parts.append((lib.name, st.st_size, int(st.st_mtime)))
    with contextlib.suppress(OSError):
        st = Path(model_path).stat()
        parts.append((str(Path(model_path).resolve()), st.st_size, int(st.st_mtime)))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def _cpu_identity() -> str:
    """The CPU's model name and feature flags (Linux), else what the platform module says."""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        fields = {}
        for line in text.splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
            if "flags" in fields and "model name" in fields:
                break
        return f"{fields.get('model name', '')}|{fields.get('flags', '')}"
    return platform.processor()


def _read_cached(key: str) -> Verdict | None:
    try:
        data = json.loads(_cache_file().read_text())
        row = data[key]
        return Verdict(extra_bufts=bool(row["extra_bufts"]), reason=str(row.get("reason", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cached(key: str, found: Verdict) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[key] = {"extra_bufts": found.extra_bufts, "reason": found.reason}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".native-check.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache only costs the check again next time
        log.debug("could not remember the native check in %s: %s", path, e)


# --- the child ---------------------------------------------------------------------------------------------------


def probe_prompt(n_words: int = PROBE_TOKENS) -> str:
    """Plain English that tokenizes to about one token a word."""
    words = ("the", "model", "reads", "a", "long", "prompt", "of", "plain", "words", "before", "it", "writes")
    return " ".join(words[i % len(words)] for i in range(n_words))


def _child(model_path: str, extra_bufts: bool) -> int:
    from llama_cpp import Llama

    with model_params(extra_bufts=extra_bufts):
        llm = Llama(model_path=model_path, n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
    tokens = llm.tokenize(probe_prompt().encode(), add_bos=True)
    llm.create_completion(tokens, max_tokens=2, temperature=0.0)
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2] == "1"))
