"""The per-item cache the long benchmarks share (efficacy.py, tools.py): every finished item is one JSON line,
appended and flushed as it finishes, so an interrupted run resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def tool_actor_sources() -> list[str]:
    """The text of what the tool-using actor reads and runs (its prompts and code): part of the cache key of any
    item evaluated with tools, so a changed prompt is evaluated afresh."""
    import flexlearn

    package = Path(flexlearn.__file__).resolve().parent
    files = [
        *sorted((package / "prompts").glob("tool_actor_*.txt")),
        package / "agents" / "tool_actor.py",
        package / "agents" / "tools.py",
    ]
    return [f.read_text() for f in files]


def fingerprint(*parts: Any) -> str:
    """A short stable hash of whatever an item's result depends on (its cache key)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Cache:
    """Finished items by (key, problem id); a line cut short by a crash is skipped on reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.items[(item["key"], item["problem_id"])] = item

    def get(self, key: str, problem_id: str) -> dict[str, Any] | None:
        return self.items.get((key, problem_id))

    def put(self, item: dict[str, Any]) -> None:
        self.items[(item["key"], item["problem_id"])] = item
        with self.path.open("a") as f:
            f.write(json.dumps(item) + "\n")
            f.flush()
            os.fsync(f.fileno())
