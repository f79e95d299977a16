"""The learn-run ledger."""

from __future__ import annotations

import pytest

from flexlearn.errors import LibraryError
from flexlearn.library.store import Library


def test_run_records_support_resuming(lib: Library) -> None:
    assert lib.latest_run("learn") is None and lib.run_status("r1") is None
    lib.begin_run("r1", kind="learn", config={"model": "m", "epochs": 2})
    lib.begin_run("r2", kind="learn", config={})
    lib.begin_run("e1", kind="eval", config={})
    lib.begin_run("r1", kind="learn", config={"ignored": True})  # a resume keeps the original config
    assert lib.run_config("r1") == {"model": "m", "epochs": 2}
    assert lib.latest_run("learn") == "r2" and lib.latest_run("eval") == "e1"
    assert lib.run_status("r1") == "running"

    lib.record_problem("r1", "p2", status="explored", trajectory={"steps": [1]})
    lib.record_problem("r1", "p1", status="explored", trajectory={"steps": []})
    lib.record_problem("r1", "p2", status="done", trajectory={"steps": [1, 2]})
    assert lib.problem_status("r1") == {"p2": "done", "p1": "explored"}
    assert list(lib.problem_status("r1")) == ["p2", "p1"]
    assert lib.trajectory("r1", "p2") == {"steps": [1, 2]}
    assert lib.trajectory("r1", "p3") is None and lib.problem_status("r2") == {}

    lib.finish_run("r1")
    assert lib.run_status("r1") == "done"
    with pytest.raises(LibraryError, match="begin_run"):
        lib.record_problem("nope", "p1", status="x", trajectory={})
    with pytest.raises(LibraryError):
        lib.finish_run("nope", "failed")


def test_resume_tells_apart_runs_on_other_problems_under_the_same_ids(lib: Library) -> None:
    """Two learners' train.jsonl in two folders give their problems the same ids (train.jsonl:1...): --resume
    continues the run on the same questions, by the digest each run recorded, not the newest run with those ids."""
    ids = ["train.jsonl:1", "train.jsonl:2"]
    lib.begin_run("mine", kind="learn", config={"task": "math", "problem_ids": ids, "problems_digest": "aaa"})
    lib.begin_run("theirs", kind="learn", config={"task": "math", "problem_ids": ids, "problems_digest": "bbb"})
    assert lib.resumable_run("learn", task="math", problem_ids=ids, problems_digest="aaa") == "mine"
    assert lib.resumable_run("learn", task="math", problem_ids=ids, problems_digest="bbb") == "theirs"
    assert lib.resumable_run("learn", task="math", problem_ids=ids) == "theirs"  # no digest given: the newest
    with pytest.raises(LibraryError, match="nothing to resume"):
        lib.resumable_run("learn", task="math", problem_ids=ids, problems_digest="ccc")
    with pytest.raises(LibraryError, match="same problem ids but other questions or answers"):
        lib.resumable_run("learn", task="math", problem_ids=ids, problems_digest="aaa", run_id="theirs")
    # A run from before runs recorded a digest is resumed on its ids alone.
    lib.begin_run("older", kind="learn", config={"task": "math", "problem_ids": ["p1"]})
    assert lib.resumable_run("learn", task="math", problem_ids=["p1"], problems_digest="ddd") == "older"
