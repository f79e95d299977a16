"""A run directory: everything an evaluation produced, so a report can be rebuilt without calling the model.

- `results.json`: run metadata and one summary per mode (accuracy with its 95% interval, the task's own metric
  when it has one, calls, tokens, errors);
- `items.jsonl`: one record per evaluated item, mode and repeat: prompt, reply, extracted answer, score,
  retrieved experience ids, calls, tokens;
- `library.json`: a snapshot of the library used (its stats and entries), so the report shows the library as it
  was even if the file changes later;
- `scaling.json` / `inherit.json`: written by `flex scaling` and `flex inherit`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flexlearn.library.store import Library
from flexlearn.loop.evaluate import ModeResult


def write_run(
    directory: Path, meta: dict[str, Any], results: Sequence[ModeResult], library: Library | None = None
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "results.json", {**meta, "results": [r.summary() for r in results]})
    lines = (json.dumps(asdict(item), ensure_ascii=False) for r in results for item in r.items)
    _atomic_write(directory / "items.jsonl", "".join(line + "\n" for line in lines))
    if library is not None:
        write_library_snapshot(directory / "library.json", library)


def write_library_snapshot(path: Path, library: Library) -> None:
    write_json(
        path,
        {"path": str(library.path), "stats": library.stats(), "experiences": [e.to_dict() for e in library.list()]},
    )


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
