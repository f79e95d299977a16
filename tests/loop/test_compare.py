"""Flex against each baseline on the same problems (`loop.compare.against_others`)."""

from __future__ import annotations

from flexlearn.loop.compare import against_others
from flexlearn.records import ItemRecord, ModeResult


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
