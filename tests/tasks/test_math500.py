"""Math500Task: MATH-500 records keep their unique_id, subject and level; scoring is MathTask's."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlearn.errors import InputError
from flexlearn.tasks import Problem, Task, get_task
from flexlearn.tasks.math import MathTask
from flexlearn.tasks.math500 import Math500Task

FIXTURES = Path(__file__).parent / "fixtures"
TASK = Math500Task()


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return TASK.load(FIXTURES / "math500_sample.jsonl")


def test_is_a_math_task() -> None:
    assert isinstance(TASK, Task)
    assert isinstance(TASK, MathTask)
    assert TASK.name == "math500"
    assert isinstance(get_task("math500"), Math500Task)
    assert TASK.answer_format == MathTask.answer_format


def test_ids_from_unique_id_and_subject_and_level_in_meta(problems: list[Problem]) -> None:
    first = problems[0]
    assert first.id == "test/precalculus/807.json"
    assert first.meta["subject"] == "Precalculus"
    assert first.meta["level"] == 2
    assert "unique_id" not in first.meta
    assert first.meta["solution"].startswith("We have that $r = \\sqrt{0^2 + 3^2} = 3.$")
    assert len({p.id for p in problems}) == len(problems) == 8
    assert all(p.id.startswith("test/") and p.id.endswith(".json") for p in problems)
    assert TASK.render(first) == first.question


def test_reference_solutions_score_right_and_others_wrong(problems: list[Problem]) -> None:
    for index, item in enumerate(problems):
        assert TASK.score(item.meta["solution"], item).correct, item.id
        assert TASK.score(TASK.format_answer(item), item).correct, item.id
        other = problems[(index + 1) % len(problems)]
        assert not TASK.score(TASK.format_answer(other), item).correct, (item.id, other.id)


@pytest.mark.parametrize(
    ("reply", "correct", "detail"),
    [
        ("\\boxed{(3, \\pi/2)}", True, "equivalent"),
        ("Final answer: $\\left(3, \\frac{\\pi}{2}\\right)$", True, "equivalent"),
        ("\\boxed{(3, \\pi)}", False, "not equivalent"),
        ("I give up.", False, "no final answer"),
    ],
)
def test_scoring_is_math_verify(problems: list, reply: str, correct: bool, detail: str) -> None:
    score = TASK.score(reply, problems[0])
    assert score.correct is correct
    assert detail in score.detail


def test_a_record_without_unique_id_gets_the_loader_id(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answer": "4", "unique_id": "u/1"}\n')
    assert [p.id for p in TASK.load(path)] == ["plain.jsonl:1", "u/1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"problem": "a", "answer": "1", "unique_id": "u"}\n{"problem": "b", "answer": "2", "unique_id": "u"}\n',
            ":2: duplicate unique_id 'u'",
        ),
        ('{"problem": "a", "answer": "1", "unique_id": 5}\n', ":1: field 'unique_id' must be a non-empty string"),
        ('{"problem": "a"}\n', ":1: missing field 'answer'"),
    ],
)
def test_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        TASK.load(path)
