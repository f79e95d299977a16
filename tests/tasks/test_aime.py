"""AimeTask: the three AIME file formats, and integer scoring (zero padding, range, non-integers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlearn.errors import InputError
from flexlearn.tasks import Problem, Task, get_task
from flexlearn.tasks.aime import AimeTask, parse_integer

FIXTURES = Path(__file__).parent / "fixtures"
TASK = AimeTask()


def problem(answer: str) -> Problem:
    return Problem(id="p", question="q", answer=answer)


def test_is_a_task() -> None:
    assert isinstance(TASK, Task)
    assert isinstance(get_task("aime"), AimeTask)
    assert "\\boxed{" in TASK.answer_format and "0 to 999" in TASK.answer_format


def test_loads_aime25_jsonl() -> None:
    problems = TASK.load(FIXTURES / "aime25_sample.jsonl")
    assert [(p.id, p.answer) for p in problems] == [("0", "70"), ("1", "588"), ("2", "16")]
    assert problems[0].question.startswith("Find the sum of all integer bases $b>9$")
    assert TASK.render(problems[0]) == problems[0].question


def test_loads_the_flex_split() -> None:
    problems = TASK.load(FIXTURES / "flex_aime_test_tail.jsonl")
    assert [(p.id, p.answer) for p in problems] == [
        ("flex_aime_test_tail.jsonl:1", "104"),
        ("flex_aime_test_tail.jsonl:2", "240"),
    ]


def test_loads_a_json_array() -> None:
    problems = TASK.load(FIXTURES / "aime_2024_sample.json")
    # The file numbers the last problem of a contest 0; the id says 15.
    assert [(p.id, p.answer) for p in problems] == [("2024-I-1", "204"), ("2024-I-2", "025"), ("2024-II-15", "315")]
    assert problems[2].meta["problem_number"] == 0
    assert set(problems[0].meta) == {"solution", "year", "aime_number", "problem_number", "difficulty"}
    assert problems[0].question.startswith("Every morning Aya goes for a $9$-kilometer-long walk")
    # A zero-padded reference: "25" and "025" are both right, and the worked-example ending drops the padding.
    assert TASK.score("\\boxed{25}", problems[1]).correct
    assert TASK.score("\\boxed{025}", problems[1]).correct
    assert TASK.format_answer(problems[1]) == "Final answer: \\boxed{25}"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.jsonl", '{"problem": "p", "answer": "1/2"}\n', "a.jsonl:1: answer '1/2' is not an integer from 0 to 999"),
        ("b.jsonl", '{"problem": "p", "answer": 7}\n{"problem": "q", "answer": 1000}\n', "b.jsonl:2: answer '1000'"),
        ("c.json", '[{"problem": "p", "answer": "12"}, {"problem": "q"}]', "element 2: 'answer' must be"),
        ("d.json", '[{"problem": "p", "answer": "x"}]', "element 1: answer 'x' is not an integer"),
        ("e.json", '[{"answer": "12"}]', "element 1: missing or empty 'problem'"),
        ("f.json", "[1]", "element 1: expected a JSON object"),
        ("g.json", "[]", "non-empty JSON array"),
        ("h.json", '[{"problem": "p",\n "answer": }]', "h.json:2: not valid JSON"),
        ("i.json", '[{"problem": "p", "answer": "1", "id": 3}, {"problem": "q", "answer": "2", "id": 3}]', "duplicate"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        TASK.load(path)


@pytest.mark.parametrize(
    ("reference", "reply", "extracted"),
    [
        ("70", "The bases are 21 and 49, so the sum is $\\boxed{70}$.", "70"),
        ("70", "\\boxed{070}", "070"),
        ("070", "\\boxed{70}", "70"),
        ("70", "Final answer: 70.", "70"),
        ("70", "**Final answer:** $070$", "070"),
        ("70", "so the answer is \\boxed{n = 70}", "n = 70"),
        ("70", "\\boxed{\\textbf{70}}", "\\textbf{70}"),
        ("70", "\\boxed{70.0}", "70.0"),
        ("0", "\\boxed{0}", "0"),
        ("999", "\\boxed{999}", "999"),
        ("70", "I first thought \\boxed{49}, but I missed 21, so \\boxed{70}", "70"),
        ("70", "Adding up, 21 + 49 = 70", "70"),
    ],
)
def test_right_answers(reference: str, reply: str, extracted: str) -> None:
    score = TASK.score(reply, problem(reference))
    assert (score.correct, score.value, score.extracted) == (True, 1.0, extracted), score.detail


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        ("\\boxed{71}", "differs from the reference 70"),
        ("\\boxed{7}", "differs from the reference 70"),
        ("\\boxed{700}", "differs from the reference 70"),
        ("\\boxed{70.5}", "the answer is not an integer"),
        ("\\boxed{\\frac{140}{2}}", "the answer is not an integer"),
        ("\\boxed{seventy}", "the answer is not an integer"),
        ("\\boxed{1070}", "outside the AIME range 0-999"),
        ("\\boxed{-70}", "outside the AIME range 0-999"),
        ("Final answer: 7e1", "the answer is not an integer"),
        ("I cannot solve this.", "no final answer found in the reply"),
        ("\\boxed{}", "no final answer found in the reply"),
    ],
)
def test_wrong_and_malformed_answers(reply: str, detail: str) -> None:
    score = TASK.score(reply, problem("70"))
    assert (score.correct, score.value) == (False, 0.0)
    assert detail in score.detail


def test_reference_endings_score_right_and_others_wrong() -> None:
    problems = TASK.load(FIXTURES / "aime25_sample.jsonl") + TASK.load(FIXTURES / "aime_2024_sample.json")
    for index, item in enumerate(problems):
        assert TASK.score(TASK.format_answer(item), item).correct, item.id
        other = problems[(index + 1) % len(problems)]
        assert not TASK.score(TASK.format_answer(other), item).correct, item.id


@pytest.mark.parametrize(
    ("text", "value"),
    [("070", 70), ("$70$.", 70), ("+7", 7), ("\u22125", -5), ("1\\,000", 1000), ("7.", 7), ("1" * 5000, None)],
)
def test_parse_integer(text: str, value: int | None) -> None:
    assert parse_integer(text) == value
