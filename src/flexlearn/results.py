"""A run directory: everything an evaluation produced, so a report can be rebuilt without calling the model.

- `results.json`: run metadata and one summary per mode (accuracy with its 95% interval, the task's own metric
  when it has one, calls, tokens, errors);
- `items.jsonl`: one record per evaluated item, mode and repeat: prompt, reply, extracted answer, score,
  retrieved experience ids, calls, tokens;
- `library.ref.json`: the library used, by reference: its path, content hash, revision and stats, and the
  entries the run retrieved, in full, so the report shows what the run saw even if the file changes later;
- `library.json` instead, with `snapshot=True` (`--snapshot`): the whole library, exported with `export_json`;
- `versions.json`: the library's newest versions and every verdict of the regression gate (with a library);
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
from flexlearn.library import history
from flexlearn.library.formats import export_json
from flexlearn.library.store import Library
from flexlearn.records import (
    ITEMS,
    LIBRARY,
    LIBRARY_REF,
    RESULTS,
    VERSIONS,
    GateView,
    LibraryRef,
    ModeResult,
    Results,
    Versions,
    VersionView,
)


def write_run(
    directory: Path,
    meta: dict[str, Any],
    results: Sequence[ModeResult],
    library: Library | None = None,
    *,
    snapshot: bool = False,
) -> None:
    """Write `results.json` (`meta` and a summary per mode), `items.jsonl` and, given a library, `versions.json`
    and `library.ref.json` (or, with `snapshot`, a full copy in `library.json`)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / RESULTS, Results.model_validate({**meta, "results": list(results)}))
    lines = (json.dumps(item.model_dump(), ensure_ascii=False) for r in results for item in r.items)
    write_atomic(directory / ITEMS, "".join(line + "\n" for line in lines))
    if library is None:
        return
    write_json(directory / VERSIONS, versions_record(library))
    # A folder holds one of the two: a stale one left by an earlier run into the same folder would be misread.
    (directory / (LIBRARY_REF if snapshot else LIBRARY)).unlink(missing_ok=True)
    if snapshot:
        export_json(library, directory / LIBRARY)
    else:
        retrieved = dict.fromkeys(eid for r in results for item in r.items for eid in item.retrieved)
        write_json(directory / LIBRARY_REF, library_ref(library, list(retrieved)))


RECENT_VERSIONS = 30


def versions_record(library: Library) -> Versions:
    """The library's history for the report: its newest versions and every gate verdict."""
    with library.snapshot():
        found = history.versions(library)
        gates = [
            GateView.model_validate({"run_id": run.run_id, **(library.run_config(run.run_id) or {})})
            for run in library.runs("gate")
        ]
    return Versions(
        total=len(found),
        recent=[VersionView.model_validate(v.to_dict()) for v in found[-RECENT_VERSIONS:]],
        gates=gates,
    )


def library_ref(library: Library, retrieved: Sequence[str]) -> LibraryRef:
    """`library`, by reference, with the entries `retrieved` in full (in that order), read in one snapshot."""
    with library.snapshot():
        found = library.find_many(retrieved)
        return LibraryRef(
            format="flexlearn-library-ref",
            path=library.location if library.path is None else str(library.path.resolve()),
            content_hash=library.content_hash(),
            revision=library.revision(),
            stats=library.stats(),
            experiences=[found[eid].to_dict() for eid in retrieved if eid in found],
            missing=[eid for eid in retrieved if eid not in found],
        )


def write_json(path: Path, data: BaseModel | Any) -> None:
    """Write a record (or plain JSON data) to `path`, atomically."""
    if isinstance(data, BaseModel):
        # Python-mode dump, not model_dump_json: a NaN metric stays NaN rather than turning into null.
        data = data.model_dump()
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))
