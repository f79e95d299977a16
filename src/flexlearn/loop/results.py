"""A run directory: everything an evaluation produced, so a report can be rebuilt without calling the model.

- `results.json`: run metadata and one summary per mode (accuracy with its 95% interval, the task's own metric
  when it has one, calls, tokens, errors);
- `items.jsonl`: one record per evaluated item, mode and repeat: prompt, reply, extracted answer, score,
  retrieved experience ids, calls, tokens;
- `library.json`: the library used, exported with `export_json`, so the report shows the library as it was
  even if the file changes later;
- `scaling.json` / `inherit.json`: written by `flex scaling` and `flex inherit`.

Every file is one of the records in `flexlearn.records`, the same classes the report reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flexlearn.atomic import write_atomic
from flexlearn.library.formats import export_json
from flexlearn.library.store import Library
from flexlearn.records import ITEMS, LIBRARY, RESULTS, ModeResult, Results


def write_run(
    directory: Path, meta: dict[str, Any], results: Sequence[ModeResult], library: Library | None = None
) -> None:
    """Write `results.json` (`meta` and a summary per mode), `items.jsonl` and, given a library, `library.json`."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / RESULTS, Results.model_validate({**meta, "results": list(results)}))
    lines = (json.dumps(item.model_dump(), ensure_ascii=False) for r in results for item in r.items)
    write_atomic(directory / ITEMS, "".join(line + "\n" for line in lines))
    if library is not None:
        export_json(library, directory / LIBRARY)


def write_json(path: Path, data: BaseModel | Any) -> None:
    """Write a record (or plain JSON data) to `path`, atomically."""
    if isinstance(data, BaseModel):
        # Python-mode dump, not model_dump_json: a NaN metric stays NaN rather than turning into null.
        data = data.model_dump()
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))
