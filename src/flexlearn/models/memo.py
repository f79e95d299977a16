"""The reply of a request asked before, given again without asking the model: for a model that answers a request
the same way every time.

An embedded model at temperature 0 does (`local.REPLY_REVISION`: each call evaluates its whole prompt afresh), and
evaluations ask it the same request more than once: the agent baseline's first attempt is vanilla's request, word
for word, so with both modes evaluated the agent's first attempt costs a second reply identical to the first
(Qwen2.5-Coder 1.5B on 200 Formula problems: 187 agent items that kept their first attempt held vanilla's reply
byte for byte; about 20 of 80 minutes of baselines).

`ReplyMemo` keys a request by everything that decides its reply (the model's name, role, prompt, schema, options and
a caller's `salt`, e.g. the backend's reply revision) and keeps the replies in memory, or also in a JSONL file
(`path`) so that a later process reuses them. A reused reply carries the usage of the call that made it, so what an
item reports costing is what it costs asked alone; `hits` and `reused` count what was not asked again. Requests
with a temperature above 0 always reach the model. Wrap only a model whose replies are deterministic at the
temperature it is asked with (the caller knows: an embedded model is, a hosted one is not).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flexlearn.models.base import ChatModel, GenerationOptions, Prompt, Reply, Usage
from flexlearn.models.middleware import _Wrapper


def is_deterministic(model: ChatModel, options: GenerationOptions | None = None) -> bool:
    """Whether `model` asked with `options` gives a request the same reply every time: an embedded model (its
    name starts with "local:") at temperature 0, its default. A hosted model is not, even at temperature 0."""
    temperature = (options or GenerationOptions()).temperature
    return model.name.startswith("local:") and not temperature


class ReplyMemo(_Wrapper):
    """A `ChatModel` that answers a request it has seen from its memory, and asks `inner` otherwise."""

    def __init__(self, inner: ChatModel, path: Path | None = None, *, salt: str = "") -> None:
        super().__init__(inner)
        self.path = path
        self.salt = salt
        self.hits = 0
        self.reused = Usage()
        self._replies: dict[str, Reply] = {}
        if path is not None and path.exists():
            self._replies = _read(path)
            _end_line(path)

    def key(self, prompt: Prompt, role: str, schema: dict[str, Any] | None, options: GenerationOptions | None) -> str:
        """What decides the reply to a request, hashed."""
        request = {
            "model": self.inner.name,
            "salt": self.salt,
            "role": role,
            "prompt": asdict(prompt),
            "schema": schema,
            "options": asdict(options or GenerationOptions()),
        }
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply:
        """The kept reply to this request, or the inner model's (kept, unless sampled at a temperature above 0)."""
        if options is not None and options.temperature:
            return await super().generate(prompt, role=role, schema=schema, options=options)
        key = self.key(prompt, role, schema, options)
        kept = self._replies.get(key)
        if kept is not None:
            self.hits += 1
            self.reused = self.reused + kept.usage
            usage = Usage(kept.usage.prompt_tokens, kept.usage.completion_tokens)
            return Reply(kept.text, usage, 0.0, kept.structured_mode)
        reply = await super().generate(prompt, role=role, schema=schema, options=options)
        self._replies[key] = reply
        if self.path is not None:
            _append(self.path, key, reply)
        return reply

    async def _around(self, role: str, call: Callable[[], Awaitable[Reply]]) -> Reply:
        return await call()


def _append(path: Path, key: str, reply: Reply) -> None:
    """One line per reply, flushed as it is made: a crash loses at most the line being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "key": key,
        "text": reply.text,
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
        "structured_mode": reply.structured_mode,
    }
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _end_line(path: Path) -> None:
    """End the file's last line if a crash left it torn, so that the next reply starts a line of its own."""
    with path.open("rb+") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) != b"\n":
            fh.write(b"\n")


def _read(path: Path) -> dict[str, Reply]:
    """The replies kept in `path`; a line that does not parse (the torn last line of a crash) is skipped."""
    replies: dict[str, Reply] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            replies[row["key"]] = Reply(
                row["text"], Usage(row["prompt_tokens"], row["completion_tokens"]), 0.0, row["structured_mode"]
            )
        except (ValueError, KeyError, TypeError):
            continue
    return replies
