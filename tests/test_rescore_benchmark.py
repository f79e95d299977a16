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
    assert out["modes"]["vanilla"] == {"key": "v1", "strict": 1, "lenient": 2, "no_answer": 2}
    assert out["modes"]["flex"] == {"key": "f1", "strict": 3, "lenient": 3, "no_answer": 0}
    assert out["paired"]["strict"]["flex-vanilla"]["wins"] == 2
    assert out["paired"]["lenient"]["flex-vanilla"]["wins"] == 1

    rescore.main(["--task", "formula", "--test", str(test), "--work", str(work), "--key", "flex=f0"])
    assert json.loads(capsys.readouterr().out)["n"] == 1  # only the problem both modes' chosen keys answered
    with pytest.raises(SystemExit):
        rescore.main(["--task", "formula", "--test", str(test), "--work", str(work), "--key", "flex=zz"])
