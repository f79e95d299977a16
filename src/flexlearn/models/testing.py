"""`TestModel`: a `ChatModel` for tests that answers by itself, so a test need not hand-write a reply function.

A structured call (the critic's, the distiller's, the updater's: any call with a JSON schema) gets a JSON value
built from the schema alone, valid by construction: an enum takes its first value, a string a plain sentence cut
or repeated to its length bounds, a number its lower bound, a boolean False, an array its minimum number of items
(at least one, where the schema allows it), an object every property. `values` overrides what a property gets,
by name, at any depth (``TestModel(values={"correct": True, "action": "add"})``). A free-text call (the actor's)
gets `text`, or what `replies[role]` gives for that role (a string, or a function of the prompt). Every call is
kept in `calls`, for assertions about what each role was asked.

Like pydantic-ai's TestModel, it tests the plumbing (prompts built, replies parsed, lessons stored, counters
moved), not a model's judgement.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flexlearn.models.base import GenerationOptions, Prompt, PromptKind, Reply, Usage

# A string's value: a plain sentence (agents drop lessons too short to teach anything), cut or repeated to its bounds.
FILLER = "Check each step of the work before giving the answer."


@dataclass
class Call:
    """One call a `TestModel` answered."""

    role: str
    prompt: Prompt
    schema: dict[str, Any] | None
    reply: str


def instance(schema: Mapping[str, Any], *, values: Mapping[str, Any] | None = None) -> Any:
    """A value valid against the JSON `schema` (see the module's rules), with `values` for named properties."""
    return _value(schema, dict(schema.get("$defs", {})), dict(values or {}))


def _value(schema: Mapping[str, Any], defs: dict[str, Any], values: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return _value(defs[str(schema["$ref"]).rsplit("/", 1)[-1]], defs, values)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and "type" not in schema:
        return schema["default"]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = [s for s in schema[union] if s.get("type") != "null"] or schema[union]
            return _value(options[0], defs, values)
    if "allOf" in schema:
        return _value(schema["allOf"][0], defs, values)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        return {name: values[name] if name in values else _value(sub, defs, values) for name, sub in properties.items()}
    if kind == "array":
        low, high = int(schema.get("minItems", 0)), schema.get("maxItems")
        count = max(low, 1) if high is None or int(high) >= 1 else 0
        return [_value(schema.get("items", {}), defs, values) for _ in range(count)]
    if kind == "string":
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        text = " ".join([FILLER] * (low // len(FILLER) + 1))
        return text[: int(high)].rstrip() if high is not None else text
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = low + 1 if "exclusiveMinimum" in schema else low
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None


@dataclass
class TestModel:
    """A `ChatModel` that answers every call by itself (see the module). `name` is its model URI in records."""

    __test__ = False  # not a pytest test class, whatever its name

    text: str = "Final answer: \\boxed{0}"
    values: Mapping[str, Any] = field(default_factory=dict)
    replies: Mapping[str, str | Callable[[Prompt], str]] = field(default_factory=dict)
    name: str = "test:model"
    prompt_kind: PromptKind = PromptKind.CHAT
    calls: list[Call] = field(default_factory=list)

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply:
        if role in self.replies:
            given = self.replies[role]
            text = given(prompt) if callable(given) else given
        elif schema is not None:
            text = json.dumps(instance(schema, values=self.values))
        else:
            text = self.text
        self.calls.append(Call(role, prompt, schema, text))
        words = sum(len(m.content.split()) for m in prompt.messages)
        usage = Usage(prompt_tokens=words, completion_tokens=len(text.split()))
        return Reply(text, usage, structured_mode="json_schema" if schema else "none")

    def roles(self) -> list[str]:
        """The role of each call, in order."""
        return [c.role for c in self.calls]

    async def aclose(self) -> None:
        return None
