"""Flex against each baseline on the same problems (`loop.compare.against_others`)."""

from __future__ import annotations

import json
from pathlib import Path

from flexlearn.loop.compare import against_others
from flexlearn.records import ItemRecord, ModeResult
from tests.support.fake_openai import FakeOpenAI


def result(mode: str, correct: list[bool], *, repeats: int = 1) -> ModeResult:
    items = [
        ItemRecord(mode=mode, problem_id=f"p{i // repeats}", correct=c, repeat=i % repeats)
        for i, c in enumerate(correct)
    ]
    return ModeResult(mode=mode, n=len(correct) // repeats, correct=sum(correct), items=items, repeats=repeats)


def test_flex_minus_each_other_mode_pairs_the_same_problems() -> None:
    flex = result("flex", [True, True, True, False])
    vanilla = result("vanilla", [True, False, False, False])
    agent = result("agent", [True, True, False, True])
    compared = against_others([vanilla, flex, agent])
    assert list(compared) == ["vanilla", "agent"]
    assert compared["vanilla"]["diff"] == 0.5 and (compared["vanilla"]["wins"], compared["vanilla"]["losses"]) == (2, 0)
    assert compared["agent"]["diff"] == 0.0 and (compared["agent"]["wins"], compared["agent"]["losses"]) == (1, 1)
    assert compared["vanilla"]["ci_low"] <= 0.5 <= compared["vanilla"]["ci_high"]
    # Only the problems both modes answered are paired.
    partial = ModeResult(mode="icl", n=1, correct=1, items=[ItemRecord(mode="icl", problem_id="p3", correct=True)])
    assert against_others([flex, partial])["icl"] == {
        "diff": -1.0,
        "ci_low": -1.0,
        "ci_high": -1.0,
        "wins": 0,
        "losses": 1,
        "n": 1,
    }


def test_repeats_pair_by_the_share_of_right_samples_and_flex_alone_compares_nothing() -> None:
    flex = result("flex", [True, True, False, True], repeats=2)  # p0: 1.0, p1: 0.5
    vanilla = result("vanilla", [True, False, False, False], repeats=2)  # p0: 0.5, p1: 0.0
    compared = against_others([flex, vanilla])["vanilla"]
    assert (compared["diff"], compared["wins"], compared["n"]) == (0.5, 2, 2)
    assert against_others([flex]) == {}
    assert against_others([vanilla]) == {}


def test_the_printed_table_marks_the_best_baseline() -> None:
    from rich.console import Console

    from flexlearn.cli.output import paired_table

    results = [
        result("vanilla", [True, False, False, False]),
        result("agent", [True, True, False, False]),
        result("flex", [True, True, True, False]),
    ]
    console = Console(record=True, width=120)
    console.print(paired_table(results, against_others(results)))
    text = console.export_text()
    assert "agent (best)" in text and "vanilla (best)" not in text
    assert "+50.0 pts" in text and "+25.0 pts" in text


def test_accuracy_per_kind_of_problem_counts_every_mode_and_skips_items_without_one() -> None:
    from flexlearn.loop.compare import by_category

    def kinds(mode: str, rows: list[tuple[str, bool]]) -> ModeResult:
        items = [ItemRecord(mode=mode, problem_id=f"p{i}", category=c, correct=ok) for i, (c, ok) in enumerate(rows)]
        return ModeResult(mode=mode, n=len(items), correct=sum(ok for _, ok in rows), items=items)

    flex = kinds("flex", [("ROI", True), ("ROI", True), ("NPV", False), ("", True)])
    vanilla = kinds("vanilla", [("ROI", False), ("ROI", True), ("NPV", False), ("", True)])
    assert by_category([vanilla, flex]) == {
        "NPV": {"vanilla": [0, 1], "flex": [0, 1]},
        "ROI": {"vanilla": [1, 2], "flex": [2, 2]},
    }
    assert by_category([kinds("flex", [("", True)])]) == {}


def test_flex_eval_prints_accuracy_per_category(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    from tests.support.cli import flex, model_uri

    rows = [("What is 1+1?", "2.0", "sums"), ("What is 2+2?", "4.0", "sums"), ("What is 2*3?", "6.0", "products")]
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"question": q, "answer": a, "category": c}) + "\n" for q, a, c in rows))
    common = [
        "eval",
        "--task",
        "formula",
        "--test",
        str(test),
        "--modes",
        "vanilla",
        "--model",
        model_uri(scripted_server),
    ]
    printed = json.loads(flex(*common, "--json").stdout)
    assert {k: v["vanilla"][1] for k, v in printed["by_category"].items()} == {"products": 1, "sums": 2}
    text = " ".join(flex(*common, "--by-category").stdout.split())  # the title wraps over a narrow table
    assert "accuracy per kind of problem" in text and "│ products │ 0/1 │" in text and "│ sums │ 0/2 │" in text
    assert "accuracy per kind of problem" not in flex(*common).stdout
