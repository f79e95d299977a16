"""benchmarks/postgres_scale.py's writers and their verification, on both backends: a few decisions through the
updater's write path verify clean, and a lost, a duplicated or a changed decision injected afterwards is reported
as such (the check can fail)."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from flexlearn.library.copy import copy_library
from flexlearn.library.store import Library

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BASE = 300


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/postgres_scale.py as a module (it imports its neighbour synthetic, so benchmarks/ goes on the
    path)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("postgres_scale_benchmark", BENCHMARKS / "postgres_scale.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        synthetic = sys.modules["synthetic"]
    finally:
        sys.path.remove(str(BENCHMARKS))
    module.synthetic = synthetic
    return module


def _raw(target: str | Path) -> Any:
    if isinstance(target, Path):
        return sqlite3.connect(target, isolation_level=None)
    import psycopg

    return psycopg.connect(target, autocommit=True)


def test_decisions_verify_clean_and_injected_faults_are_reported(
    bench: ModuleType, library_target: str | Path, tmp_path: Path
) -> None:
    built = tmp_path / "base.flexlib"
    with bench.synthetic.build_library(built, bench.synthetic.SyntheticSpec(BASE)) as source:
        if isinstance(library_target, str):
            with Library.open(library_target) as dest:
                copy_library(source, dest)
    target = library_target if isinstance(library_target, str) else built
    journals, run_ids = [], []
    for index in range(2):
        run_id = f"bench-h0-w{index}"
        config = {"target": str(target), "run_id": run_id, "index": index, "seed": 7, "base": BASE, "seconds": 0}
        config.update(decisions=12, journal=str(tmp_path / f"writer-{index}.jsonl"))
        assert bench.run_writer(config)["decisions"] == 12
        journals.append(Path(config["journal"]))
        run_ids.append(run_id)
    records = bench.read_journals(journals)

    def verify() -> dict[str, Any]:
        with Library.open(target, create=False) as lib:
            return dict(bench.verify(lib, records, run_ids, BASE))

    clean = verify()
    assert clean["ok"], clean
    assert clean["decisions_reported"] == clean["events_logged"] == 24
    assert clean["entries_found"] == BASE + clean["actions_reported"].get("add", 0)
    adds = [r for r in records if r["action"] == "add"]
    merges = [r for r in records if r["action"] == "merge"]
    assert adds and merges  # the seeded rule made both

    # A decision committed twice, one lost, one added entry gone, one merged entry changed behind the log.
    first, second = records[0], records[1]
    with _raw(target) as raw:
        columns = "action, experience_id, reason, run_id, problem_id, candidate, before, after, created_at"
        raw.execute(
            f"INSERT INTO events({columns}) SELECT {columns} FROM events"
            f" WHERE run_id = '{first['run_id']}' AND problem_id = '{first['problem_id']}'"
        )
        raw.execute(f"DELETE FROM events WHERE run_id = '{second['run_id']}' AND problem_id = '{second['problem_id']}'")
        gone = next(r for r in adds if r is not second)
        raw.execute(f"DELETE FROM experiences WHERE id = '{gone['entry_id']}'")
        changed = next(r for r in merges if r is not second and r["entry_id"] != gone["entry_id"])
        raw.execute(f"UPDATE experiences SET content = content || ' edited' WHERE id = '{changed['entry_id']}'")
    faulty = verify()
    assert not faulty["ok"]
    assert faulty["duplicated"] == 1
    assert faulty["lost"] == 1
    assert faulty["added_entry_missing"] == 1
    assert faulty["entries_not_as_logged"] >= 2  # the deleted entry and the edited one
    assert faulty["entries_found"] == clean["entries_found"] - 1
