"""Run folders refer to their library (`library.ref.json`) unless asked for a copy (`--snapshot`), and the report
renders from the folder alone either way."""

from __future__ import annotations

import json
from pathlib import Path

from flexlearn.library.store import Library
from flexlearn.records import LIBRARY, LIBRARY_REF, ItemRecord, LibraryRef, ModeResult
from flexlearn.report import render_report
from flexlearn.results import write_run
from tests.library.builders import fill
from tests.report.runs import DELETED_ID, HOSTILE


def test_a_run_refers_to_its_library_and_the_report_needs_only_the_folder(runs: dict[str, Path]) -> None:
    folder = runs["referenced"]
    assert not (folder / LIBRARY).exists()
    ref = LibraryRef.model_validate_json((folder / LIBRARY_REF).read_text(encoding="utf-8"))
    lines = (folder / "items.jsonl").read_text(encoding="utf-8").splitlines()
    retrieved = {eid for line in lines for eid in json.loads(line)["retrieved"]}
    assert {e.id for e in ref.experiences} | set(ref.missing) == retrieved
    assert DELETED_ID in ref.missing and ref.stats.total == 12  # deleted after use, before the run was written
    assert len(ref.content_hash) == 64 and ref.revision and ref.path and not Path(ref.path).exists()
    page = render_report(folder)
    assert "refers to its library" in page and ref.content_hash[:16] in page
    for exp in ref.experiences:
        assert exp.id in page
    assert "Pitfall 7" not in page  # never retrieved: not in the folder


def test_the_snapshot_run_keeps_a_copy(runs: dict[str, Path]) -> None:
    assert (runs["full"] / LIBRARY).exists() and not (runs["full"] / LIBRARY_REF).exists()
    assert "m+n &lt;b&gt;" in render_report(runs["full"])  # an entry no item retrieved
    assert "refers to its library" not in render_report(runs["full"])


def _result(retrieved: list[str]) -> ModeResult:
    item = ItemRecord(problem_id="p1", mode="flex", prompt="q", reply="a", retrieved=retrieved)
    return ModeResult(mode="flex", items=[item])


def test_snapshot_and_reference_replace_each_other(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with Library.open(tmp_path / "lib.db") as lib:
        ids = [e.id for e in fill(lib).list()][:2]
        write_run(run, {"task": "exact"}, [_result(ids)], lib, snapshot=True)
        assert (run / LIBRARY).exists() and not (run / LIBRARY_REF).exists()
        write_run(run, {"task": "exact"}, [_result(ids)], lib)
        assert (run / LIBRARY_REF).exists() and not (run / LIBRARY).exists()
        ref = LibraryRef.model_validate_json((run / LIBRARY_REF).read_text(encoding="utf-8"))
        assert [e.id for e in ref.experiences] == ids and ref.content_hash == lib.content_hash()


def test_the_content_hash_follows_what_entries_teach_not_their_use(tmp_path: Path) -> None:
    with Library.open(tmp_path / "lib.db") as lib:
        before = fill(lib).content_hash()
        first = lib.list()[0]
        lib.record_retrieval([first.id])
        assert lib.content_hash() == before
        lib.edit(first.id, content=f"{first.content} {HOSTILE}", reason="r")
        assert lib.content_hash() != before
