"""Structured replies: ask for JSON matching a pydantic model, parse leniently, validate, retry with feedback.

Small models wrap JSON in prose or code fences, use Python literals, or leave trailing commas, so parsing is
lenient; validation is strict (pydantic). A structured call never raises: the agents above treat "no valid
reply" as data (a failed rollout, a skipped critique), not as a crash.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from flexlearn.models.base import ChatModel, GenerationOptions, Message, Prompt, PromptKind, Usage
from flexlearn.models.middleware import Meter

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
# Bounds the scan on pathological text (thousands of unclosed braces make it quadratic): characters examined
# per source text. Ordinary replies of a few KB never come near it.
_MAX_SCAN = 1_000_000


@dataclass
class StructuredResult(Generic[T]):
    """The outcome of `generate_structured`: `value` when a reply validated, else `error` says why not.

    `attempts` is how many model calls were made, `usage` their summed tokens, `raw` their reply texts.
    """

    value: T | None
    error: str | None
    attempts: int
    usage: Usage = field(default_factory=Usage)
    raw: list[str] = field(default_factory=list)
    structured_mode: str = "none"

    @property
    def ok(self) -> bool:
        """True when `value` holds a validated reply."""
        return self.value is not None


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first top-level JSON object in `text`, or None.

    Looks inside ``` fences first, then the whole text. Takes the first balanced ``{...}`` that parses as an
    object (an object nested in a broken one is not taken), allowing trailing commas. Only when no such JSON
    object exists does it try Python-literal dicts (single quotes, True/None), a common small-model slip.
    """
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for python in (False, True):
        for source in sources:
            found = _first_object(source, python=python)
            if found is not None:
                return found
    return None


def _first_object(text: str, *, python: bool) -> dict[str, Any] | None:
    # JSON quotes only with '"'; counting "'" as a quote in the JSON pass would let an apostrophe in prose
    # ("{it's}") swallow the real object that follows.
    quotes = "\"'" if python else '"'
    start = text.find("{")
    budget = _MAX_SCAN
    while start != -1 and budget > 0:
        end = _balanced_end(text, start, budget, quotes)
        budget -= (end if end is not None else len(text)) - start + 1
        if end is None:
            # A stray, never-closed brace in prose: the object may start later.
            start = text.find("{", start + 1)
            continue
        candidate = text[start : end + 1]
        value = _parse_python(candidate) if python else _parse_json(candidate)
        if isinstance(value, dict):
            return value
        # Skip past this balanced span so an object nested in a broken one is not mistaken for the reply.
        start = text.find("{", end + 1)
    return None


def _balanced_end(text: str, start: int, limit: int, quotes: str) -> int | None:
    """Index of the brace closing the one at `start`; braces inside `quotes`-delimited strings are skipped."""
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(start, min(len(text), start + limit)):
        ch = text[i]
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in quotes:
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _parse_json(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except ValueError:
        pass
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", candidate))
    except ValueError:
        return None


def _parse_python(candidate: str) -> Any:
    try:
        # literal_eval evaluates literals only, never code.
        return ast.literal_eval(candidate)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:8]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def parse_structured(text: str, schema: type[T]) -> tuple[T | None, str | None]:
    """Parse and validate one reply: ``(value, None)`` or ``(None, error)``."""
    obj = extract_json_object(text)
    if obj is None:
        return None, "no JSON object found in the reply"
    try:
        return schema.model_validate(obj), None
    except ValidationError as exc:
        return None, f"the JSON does not match the schema: {_validation_summary(exc)}"


def _retry_prompt(prompt: Prompt, kind: PromptKind, bad_reply: str, error: str) -> Prompt:
    if kind is not PromptKind.CHAT:
        # A base model does not follow feedback; a fresh sample (different seed) is the better bet.
        return prompt
    # Only the latest bad reply is shown, so the prompt does not grow with each attempt.
    feedback = f"That reply was invalid: {error}. Reply with only a JSON object matching the schema."
    messages = [*prompt.messages, Message("assistant", bad_reply), Message("user", feedback)]
    return replace(prompt, messages=messages)


@functools.cache
def _json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    # pydantic builds the schema anew on every call: a few hundred microseconds, on every structured call of a run.
    # Backends only read it.
    return schema.model_json_schema()


async def generate_structured(
    model: ChatModel,
    prompt: Prompt,
    schema: type[T],
    *,
    role: str,
    attempts: int = 3,
    options: GenerationOptions | None = None,
    meter: Meter | None = None,
    json_schema: dict[str, Any] | None = None,
) -> StructuredResult[T]:
    """Ask `model` for a reply matching `schema`; up to `attempts` calls, the validation error fed back.

    `json_schema`, when given, is what the backend is asked to enforce instead of `schema`'s own JSON schema: a
    narrower shape (fixed slots, say) whose replies must still validate against `schema`.

    A reply that never validates comes back as ``value=None`` with the error, and `meter.record_failure(role)` is
    called. A `ModelError` (the model could not be reached, or the retry middleware gave up) is raised: the step
    failed, and its caller must not treat that as an answer.
    Retries after the first use ``options.seed + n`` when a seed is set, so a deterministic backend does not
    repeat the same bad reply.
    """
    json_schema = json_schema if json_schema is not None else _json_schema(schema)
    usage = Usage()
    raw: list[str] = []
    error = "no attempt was made"
    mode = "none"
    current = prompt
    tries = max(1, attempts)
    for attempt in range(tries):
        call_options = options
        if attempt and options is not None and options.seed is not None:
            call_options = replace(options, seed=options.seed + attempt)
        # A ModelError (unreachable, refused, the retries gave up) propagates: the caller's step failed, and
        # turning it into "no value" would let a dead critic, distiller or updater pass for one that answered.
        reply = await model.generate(current, role=role, schema=json_schema, options=call_options)
        usage = usage + reply.usage
        raw.append(reply.text)
        mode = reply.structured_mode
        value, problem = parse_structured(reply.text, schema)
        if value is not None:
            return StructuredResult(
                value=value, error=None, attempts=attempt + 1, usage=usage, raw=raw, structured_mode=mode
            )
        error = problem or "invalid reply"
        current = _retry_prompt(prompt, model.prompt_kind, reply.text, error)
    if meter is not None:
        meter.record_failure(role)
    return StructuredResult(
        value=None,
        error=f"no valid reply after {tries} attempts: {error}",
        attempts=tries,
        usage=usage,
        raw=raw,
        structured_mode=mode,
    )
