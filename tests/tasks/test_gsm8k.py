"""Gsm8kTask: the reference after ####, numbers read out of replies, numeric comparison."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from flexlearn.errors import InputError
from flexlearn.tasks import Problem, Task
from flexlearn.tasks.gsm8k import Gsm8kTask, reference_number

FIXTURES = Path(__file__).parent / "fixtures"
TASK = Gsm8kTask()


def problem(answer: str) -> Problem:
    return Problem(id="p", question="q", answer=answer)


def test_is_a_task() -> None:
    assert isinstance(TASK, Task)
    assert TASK.name == "gsm8k"
    assert "####" in TASK.answer_format


def test_loads_real_records_with_solutions() -> None:
    problems = TASK.load(FIXTURES / "gsm8k_test_sample.jsonl")
    assert [reference_number(p.answer) for p in problems] == [18, 3, 70000]
    assert problems[0].meta["solution"] == (
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day at the farmer\u2019s market."
    )
    assert TASK.render(problems[0]) == problems[0].question
    assert [TASK.format_answer(p) for p in problems] == ["#### 18", "#### 3", "#### 70000"]


def test_reference_solutions_score_right() -> None:
    for item in TASK.load(FIXTURES / "gsm8k_test_sample.jsonl"):
        assert TASK.score(item.answer, item).correct
        assert TASK.score(TASK.format_answer(item), item).correct


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("#### 1,450,000", Decimal(1450000)), ("#### -10", Decimal(-10)), ("72", Decimal(72)), ("$1,200", Decimal(1200))],
)
def test_reference_number(answer: str, expected: Decimal) -> None:
    assert reference_number(answer) == expected


@pytest.mark.parametrize("answer", ["#### ", "no number here", "between 3 and 4", "#### many"])
def test_reference_without_a_number(answer: str) -> None:
    assert reference_number(answer) is None
    score = TASK.score("#### 3", problem(answer))
    assert (score.correct, score.detail) == (False, "the reference holds no number")


def test_load_rejects_an_answer_without_a_number(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    path.write_text('{"question": "q", "answer": "#### 4"}\n{"question": "q", "answer": "#### four"}\n')
    with pytest.raises(InputError, match=r"gsm\.jsonl:2: answer '#### four' states no number"):
        TASK.load(path)


@pytest.mark.parametrize(
    ("reference", "reply", "extracted"),
    [
        ("18", "She makes 9 * 2 = $18 a day.\n#### 18", "18"),
        ("18", "#### 18.00", "18"),
        ("18", "#### $18", "18"),
        ("1234", "The answer is $1,234.", "1234"),
        ("1200", "#### $1,200", "1200"),
        ("1200", "So the total is \\boxed{1{,}200} dollars.", "1200"),
        ("18", "\\boxed{\\$18 \\text{ per day}}", "18"),
        ("8", "#### 5 + 3 = 8", "8"),
        ("72", "####\n72", "72"),
        ("72", "**Final answer:** 72 clips", "72"),
        ("-3", "The temperature drops to \u22123 degrees.", "-3"),
        ("0.5", "#### .5", "0.5"),
        ("72", "#### Step 1: add\n48 + 24 = 72", "72"),
        ("5", "#### 5\n\nHope this helps! (It took 2 steps.)", "5"),
    ],
)
def test_right_answers(reference: str, reply: str, extracted: str) -> None:
    score = TASK.score(reply, problem(f"work\n#### {reference}"))
    assert (score.correct, score.value, score.extracted) == (True, 1.0, extracted), score.detail


@pytest.mark.parametrize(
    ("reply", "extracted"),
    [
        ("#### 17", "17"),
        ("#### 18.01", "18.01"),
        ("I think \\boxed{18} is wrong; #### 19", "19"),
        ("Final answer: 20", "20"),
        ("It is 1,800.", "1800"),
    ],
)
def test_wrong_answers(reply: str, extracted: str) -> None:
    score = TASK.score(reply, problem("#### 18"))
    assert (score.correct, score.value, score.extracted) == (False, 0.0, extracted)
    assert score.detail == "differs from the reference 18"


@pytest.mark.parametrize("reply", ["", "I cannot tell.", "#### eighteen"])
def test_no_number(reply: str) -> None:
    score = TASK.score(reply, problem("#### 18"))
    assert (score.correct, score.extracted, score.detail) == (False, None, "no number found in the reply")


def test_tolerance() -> None:
    assert TASK.score("#### 0.3333333", problem("#### 0.3333334")).correct
    assert not TASK.score("#### 0.333", problem("#### 0.334")).correct


def test_long_numbers_are_exact() -> None:
    digits = "1" * 40
    score = TASK.score(f"#### {digits[:-1]}2", problem(f"#### {digits}"))
    assert (score.correct, score.extracted) == (False, f"{digits[:-1]}2")
    assert TASK.score(f"#### {digits}.000", problem(f"#### {digits}")).correct


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("She sells 16 - 3 - 4 = 9 eggs for 2 dollars each.\nThe answer is 18.", "18"),
        ("The answer is $1,200 (3 x 400).", "1200"),
        ("So the final answer is **72** clips, from 48 + 24.", "72"),
    ],
)
def test_the_answer_is_sentence_wins_over_the_last_number(reply: str, expected: str) -> None:
    assert Gsm8kTask().extract_answer(reply) == expected
