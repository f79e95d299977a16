"""A run directory: everything an evaluation produced, so a report can be rebuilt without calling the model.

Layout: `results.json` (run metadata and per-mode summaries) and `items.jsonl` (one record per item and mode:
prompt, reply, extracted answer, score, retrieved experience ids, calls, tokens).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flexlearn.loop.evaluate import ModeResult


def write_run(directory: Path, meta: dict[str, Any], results: Sequence[ModeResult]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / "results.json", json.dumps({**meta, "results": [r.summary() for r in results]}, indent=2))
    lines = (json.dumps(asdict(item), ensure_ascii=False) for r in results for item in r.items)
    _atomic_write(directory / "items.jsonl", "".join(line + "\n" for line in lines))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
