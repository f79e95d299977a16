"""benchmarks/rescore.py: an efficacy run's cached replies scored by the task's rule and leniently (a reply
with no stated answer read for its last number)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.bench import benchmark_module


@pytest.fixture(scope="module")
def rescore() -> ModuleType:
    return benchmark_module("rescore")


def item(key: str, mode: str, problem: int, reply: str) -> str:
    return json.dumps({"key": key, "mode": mode, "problem_id": f"test.jsonl:{problem}", "reply": reply}) + "\n"


def test_lenient_reading_scores_a_closing_sentence_and_picks_the_fullest_key(
    rescore: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [("Working capital of 780 and 521?", "259.0"), ("Ratio of 6 to 3?", "2.0"), ("Sum of 1 and 2?", "3.0")]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"question": q, "answer": a, "category": "c"}) + "\n" for q, a in rows))
    work = tmp_path / "work"
    work.mkdir()
    (work / "items.jsonl").write_text(
        item("v1", "vanilla", 1, "780 - 521 = 259\nFinal answer: 259.00")
        + item("v1", "vanilla", 2, "6 / 3 = 2, so the ratio is 2.00.")  # right, but stated in a sentence
        + item("v1", "vanilla", 3, "1 + 2 = 4, the sum is $4.")
        + item("f0", "flex", 1, "Final answer: 1")  # an earlier key, on one problem only
        + item("f1", "flex", 1, "Final answer: 259.00")
        + item("f1", "flex", 2, "Final answer: 2.00")
        + item("f1", "flex", 3, "The sum is \\boxed{3.00}")
        + '{"key": "f1", "mode": "flex", "probl'  # a line cut short by a crash
    )

    assert rescore.main(["--task", "formula", "--test", str(test), "--work", str(work)]) == 0
    out = json.loads(capsys.readouterr().out)

    assert out["n"] == 3
    counts = ("key", "strict", "lenient", "no_answer")
    assert [out["modes"]["vanilla"][k] for k in counts] == ["v1", 1, 2, 2]
    assert [out["modes"]["flex"][k] for k in counts] == ["f1", 3, 3, 0]
    assert out["paired"]["strict"]["flex-vanilla"]["wins"] == 2
    assert out["paired"]["lenient"]["flex-vanilla"]["wins"] == 1

    rescore.main(["--task", "formula", "--test", str(test), "--work", str(work), "--key", "flex=f0"])
    assert json.loads(capsys.readouterr().out)["n"] == 1  # only the problem both modes' chosen keys answered
    with pytest.raises(SystemExit):
        rescore.main(["--task", "formula", "--test", str(test), "--work", str(work), "--key", "flex=zz"])


def test_the_ace_row_is_read_from_its_folder_and_the_table_holds_costs_and_categories(
    rescore: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [("Ratio of 6 to 3?", "2.0", "Ratio"), ("Sum of 1 and 2?", "3.0", "Sum"), ("Sum of 2 and 2?", "4.0", "Sum")]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"question": q, "answer": a, "category": c}) + "\n" for q, a, c in rows))
    work = tmp_path / "work"
    (work / "ace").mkdir(parents=True)
    cached = [("flex", 1, "Final answer: 2.00"), ("flex", 2, "Final answer: 3.00"), ("flex", 3, "Final answer: 5")]
    (work / "items.jsonl").write_text(
        "".join(
            json.dumps({"key": "f", "mode": m, "problem_id": f"test.jsonl:{i}", "reply": r, "calls": 2}) + "\n"
            for m, i, r in cached
        )
    )
    # What ace_peer.py writes: ACE's final answer field, with the calls and tokens of the item; two of three so far.
    (work / "ace" / "items.jsonl").write_text(
        json.dumps(
            {"problem_id": "test.jsonl:1", "final_answer": "2.00", "calls": 1, "prompt_tokens": 900, "seconds": 30}
        )
        + "\n"
        + json.dumps(
            {"problem_id": "test.jsonl:2", "final_answer": "", "error": "InstructorRetryException", "seconds": 50}
        )
        + "\n"
    )

    assert rescore.main(["--task", "formula", "--test", str(test), "--work", str(work)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 2  # the problems both rows answered
    assert out["modes"]["ace"]["strict"] == 1 and out["modes"]["ace"]["no_answer"] == 1
    assert out["modes"]["ace"]["prompt_tokens_per_item"] == 450.0
    assert out["modes"]["flex"]["calls_per_item"] == 2.0
    # Seconds where the items recorded them (ACE's do; this flex cache, like those written before, does not).
    assert (out["modes"]["ace"]["seconds_per_item"], out["modes"]["ace"]["timed_items"]) == (40.0, 2)
    assert "seconds_per_item" not in out["modes"]["flex"]
    assert out["paired"]["strict"]["flex-ace"]["wins"] == 1
    assert out["by_category"] == {"Ratio": {"flex": [1, 1], "ace": [1, 1]}, "Sum": {"flex": [1, 1], "ace": [0, 1]}}

    rescore.main(["--task", "formula", "--test", str(test), "--work", str(work), "--modes", "flex"])
    only_flex = json.loads(capsys.readouterr().out)
    assert only_flex["n"] == 3 and list(only_flex["modes"]) == ["flex"] and only_flex["modes"]["flex"]["strict"] == 2
    with pytest.raises(SystemExit):
        rescore.main(["--task", "formula", "--test", str(test), "--work", str(work), "--modes", "flex,agent"])
