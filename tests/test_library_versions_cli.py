"""`flex library versions | diff | rollback` on a real library file, through the CLI in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from flexlearn.experience import Action, Level
from flexlearn.library.batch import Change
from flexlearn.library.store import Library
from tests.library.builders import make
from tests.support.cli import flex


def grow(path: Path) -> list[int]:
    """Two learned problems, then a harmful batch; the revision after each."""
    after: list[int] = []
    with Library.open(path) as lib:
        lib.begin_run("learn-a", kind="learn", config={})
        for problem, text in (("p1", "Divide the net income by sales."), ("p2", "Report ratios as decimals.")):
            lib.apply(
                [Change(make(text, level=Level.PRINCIPLE), Action.ADD, "new")], run_id="learn-a", problem_id=problem
            )
            after.append(lib.revision())
        target = lib.list()[1].id
        harmful = [
            Change(make("Multiply every ratio by 100."), Action.ADD, "bad"),
            Change(make("x"), Action.MERGE, "bad", target=target, merged_content="Report ratios as percents."),
        ]
        lib.apply(harmful, run_id="learn-a", problem_id="p3")
        after.append(lib.revision())
    return after


def test_versions_diff_and_rollback(tmp_path: Path) -> None:
    path = tmp_path / "lib.flexlib"
    first, second, harmful = grow(path)
    listed = json.loads(flex("library", "versions", str(path), "--json").stdout)
    assert [v["version"] for v in listed] == [first, second, harmful]
    assert listed[-1]["actions"] == {"add": 1, "merge": 1} and listed[-1]["problem_id"] == "p3"

    changed = json.loads(flex("library", "diff", str(path), str(second), "--json").stdout)
    assert [e["content"] for e in changed["added"]] == ["Multiply every ratio by 100."]
    assert changed["changed"][0]["after"]["content"] == "Report ratios as percents."
    assert "1 added, 0 removed, 1 changed" in flex("library", "diff", str(path), str(second)).stdout

    done = json.loads(flex("library", "rollback", str(path), str(second), "--reason", "hurt", "--json").stdout)
    assert done["undone"] == {"added": 1, "removed": 0, "changed": 1} and done["from"] == harmful
    with Library.open(path) as lib:
        assert [e.content for e in lib.list()] == ["Divide the net income by sales.", "Report ratios as decimals."]
        assert lib.runs("rollback")[0].run_id == done["run_id"]
    # Undone as it says: rolling back to the version before the rollback brings the batch back.
    text = flex("library", "rollback", str(path), str(harmful)).stdout
    assert "removed 0, restored 1, reverted 1" in text and "to undo it: flex library rollback" in text
    with Library.open(path) as lib:
        assert sorted(e.content for e in lib.list())[0] == "Divide the net income by sales."
        assert len(lib.list()) == 3


def test_a_version_that_is_not_one_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "lib.flexlib"
    grow(path)
    proc = flex("library", "rollback", str(path), "999", check=False)
    assert proc.returncode == 2 and "999 is not a version" in proc.stderr and "Traceback" not in proc.stderr
