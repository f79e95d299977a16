"""Reading a run directory into run records, with a malformed file reported by name (and line, for items)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from flexlearn.errors import InputError
from flexlearn.records import (
    INHERIT,
    ITEMS,
    LIBRARY,
    RESULTS,
    SCALING,
    Inherit,
    ItemRecord,
    LibrarySnapshot,
    Results,
    Scaling,
)

M = TypeVar("M", bound=BaseModel)


@dataclass
class Run:
    """Everything the report reads from a run directory; absent files are None (or empty)."""

    directory: Path
    results: Results | None
    items: list[ItemRecord]
    library: LibrarySnapshot | None
    scaling: Scaling | None
    inherit: Inherit | None

    def task_and_model(self) -> tuple[str | None, str | None]:
        """The task and model, from whichever of the run's files names them."""
        sources: list[Results | Scaling | Inherit] = [
            f for f in (self.results, self.scaling, self.inherit) if f is not None
        ]
        task = next((f.task for f in sources if f.task), None)
        model = next((f.model for f in sources if f.model), None)
        return task, model


def load_run(run_dir: Path) -> Run:
    """Read and validate a run directory. Raises InputError naming the directory when it holds none of
    results.json, scaling.json and inherit.json, and naming the file when one is malformed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("no such run directory", path=str(run_dir))
    run = Run(
        directory=run_dir,
        results=_load_json(run_dir / RESULTS, Results),
        items=_load_items(run_dir / ITEMS),
        library=_load_json(run_dir / LIBRARY, LibrarySnapshot),
        scaling=_load_json(run_dir / SCALING, Scaling),
        inherit=_load_json(run_dir / INHERIT, Inherit),
    )
    if run.results is None and run.scaling is None and run.inherit is None:
        raise InputError(
            f"nothing to report: none of {RESULTS}, {SCALING} or {INHERIT} is in this directory", path=str(run_dir)
        )
    return run


def _invalid(exc: ValidationError) -> str:
    """The first validation problem, located by its JSON path (results.2.accuracy)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def _load_json(path: Path, model: type[M]) -> M | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", path=str(path), line=exc.lineno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", path=str(path)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"not a valid {path.name} file: {_invalid(exc)}", path=str(path)) from None


def _load_items(path: Path) -> list[ItemRecord]:
    if not path.exists():
        return []
    items: list[ItemRecord] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    items.append(ItemRecord.model_validate(json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"not valid JSON ({exc.msg})", path=str(path), line=number) from None
                except ValidationError as exc:
                    raise InputError(f"not a valid item record: {_invalid(exc)}", path=str(path), line=number) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({exc})", path=str(path)) from None
    return items
