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
    LIBRARY_REF,
    RESULTS,
    SCALING,
    VERSIONS,
    Inherit,
    ItemRecord,
    LibraryRef,
    LibrarySnapshot,
    Results,
    Scaling,
    Versions,
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
    versions: Versions | None = None

    def task_and_model(self) -> tuple[str | None, str | None]:
        """The task and model, from whichever of the run's files names them."""
        sources: list[Results | Scaling | Inherit] = [
            f for f in (self.results, self.scaling, self.inherit) if f is not None
        ]
        task = next((f.task for f in sources if f.task), None)
        model = next((f.model for f in sources if f.model), None)
        return task, model

    def dataset(self) -> str | None:
        """The data set's name, from the test file: its name, or its folder's when the name says only "test"
        (the demo's `.../demo/word_facts/test.jsonl` is word_facts)."""
        files = (self.results, self.scaling, self.inherit)
        # Scaling and inherit files carry `test` as an extra field, when they carry it.
        test = next((t for f in files if f is not None and (t := getattr(f, "test", None))), None)
        if not test:
            return None
        path = Path(test)
        generic = path.stem.lower() in {"test", "tests", "eval", "dev", "val", "valid", "validation", "heldout"}
        return path.parent.name if generic and path.parent.name else path.stem


RECORD_FILES = (RESULTS, SCALING, INHERIT)
# How deep under a folder to look for a run: a demo's folder keeps its evaluation in eval/, and the folder
# that holds the demo's runs adds one level more.
SEARCH_DEPTH = 2


def locate_run(folder: Path) -> tuple[Path, int]:
    """The run directory in `folder`: `folder` itself when it holds results.json, scaling.json or inherit.json,
    else the shallowest folder below it that does (the newest of several), with how many runs were found.
    Raises InputError when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such run directory", path=str(folder))
    level = [folder]
    for _ in range(SEARCH_DEPTH + 1):
        found = [d for d in level if any((d / name).is_file() for name in RECORD_FILES)]
        if found:
            newest = max(found, key=lambda d: max((d / n).stat().st_mtime for n in RECORD_FILES if (d / n).is_file()))
            return newest, len(found)
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
    raise InputError(
        f"nothing to report: no {RESULTS}, {SCALING} or {INHERIT} in this folder or the {SEARCH_DEPTH} levels below "
        "(flex demo, flex eval --out, flex scaling and flex inherit --out write them)",
        path=str(folder),
    )


def load_run(run_dir: Path) -> Run:
    """Read and validate a run directory, or the run `locate_run` finds inside the folder given. Raises
    InputError naming the folder when it holds no run, and naming the file when one is malformed."""
    run_dir, _ = locate_run(Path(run_dir))
    run = Run(
        directory=run_dir,
        results=_load_json(run_dir / RESULTS, Results),
        items=_load_items(run_dir / ITEMS),
        # A run refers to its library (library.ref.json) unless --snapshot copied it (library.json).
        library=_load_json(run_dir / LIBRARY, LibrarySnapshot) or _load_json(run_dir / LIBRARY_REF, LibraryRef),
        scaling=_load_json(run_dir / SCALING, Scaling),
        inherit=_load_json(run_dir / INHERIT, Inherit),
        versions=_load_json(run_dir / VERSIONS, Versions),
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
