"""The JSONL reader: real files load, and every kind of bad input names the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlearn.errors import InputError
from flexlearn.tasks import load_problems
from flexlearn.tasks.loader import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, content: str | bytes, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_gsm8k_records_get_line_ids() -> None:
    problems = load_problems(FIXTURES / "gsm8k_test_sample.jsonl")
    assert [p.id for p in problems] == [f"gsm8k_test_sample.jsonl:{n}" for n in (1, 2, 3)]
    assert problems[0].question.startswith("Janet\u2019s ducks")
    assert problems[0].answer.endswith("#### 18")
    assert problems[0].meta == {}


def test_id_field_is_used_and_numbers_become_strings() -> None:
    problems = load_problems(FIXTURES / "aime25_sample.jsonl", question_key=("question", "problem"))
    assert [(p.id, p.answer) for p in problems] == [("0", "70"), ("1", "588"), ("2", "16")]


def test_other_fields_are_kept_in_meta() -> None:
    problem = load_problems(FIXTURES / "math500_sample.jsonl", question_key=("question", "problem"))[2]
    assert problem.answer == "\\frac{14}{3}"
    assert problem.meta["solution"].endswith("=\\boxed{\\frac{14}{3}}$")
    assert problem.meta["level"] == 3
    assert "problem" not in problem.meta and "answer" not in problem.meta


def test_file_without_trailing_newline_and_blank_lines(tmp_path: Path) -> None:
    problems = load_problems(FIXTURES / "flex_aime_test_tail.jsonl")
    assert [p.answer for p in problems] == ["104", "240"]
    path = write(tmp_path, '\n{"question": "q1", "answer": "a"}\n   \n\n{"question": "q2", "answer": 2.5}')
    assert [(p.id, p.answer) for p in load_problems(path)] == [("data.jsonl:2", "a"), ("data.jsonl:5", "2.5")]


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, b'\xef\xbb\xbf{"question": "q", "answer": "a"}\n')
    assert load_problems(path)[0].question == "q"


def test_accept_lists_keeps_all_answers(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": ["Paris", 75]}\n')
    problem = load_problems(path, accept_lists=True)[0]
    assert problem.answer == "Paris"
    assert problem.meta["accepted"] == ["Paris", "75"]


def test_read_jsonl_returns_raw_records(tmp_path: Path) -> None:
    path = write(tmp_path, '{"smiles": "CCO", "n": 3}\n{"smiles": "C"}\n')
    assert read_jsonl(path, required=("smiles",)) == [{"smiles": "CCO", "n": 3}, {"smiles": "C"}]


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ('{"question": "q", "answer": "a"}\n{"question": "q", "answer": \n', 2, "not valid JSON"),
        (b'{"question": "q", "answer": "a"}\n{"question": "\xff", "answer": "a"}\n', 2, "not valid UTF-8"),
        ('{"question": "q", "answer": "a"}\n\n["q", "a"]\n', 3, "expected a JSON object, got a list"),
        ('{"question": "q"}\n', 1, "missing field 'answer'"),
        ('{"question": "q", "answer": "a"}\n{"question": "  ", "answer": "a"}\n', 2, "got an empty string"),
        ('{"question": "q", "answer": null}\n', 1, "got null"),
        ('{"question": "q", "answer": true}\n', 1, "got a boolean"),
        ('{"question": "q", "answer": NaN}\n', 1, "got NaN or Infinity"),
        ('{"question": "q", "answer": {"x": 1}}\n', 1, "got an object"),
        ('{"question": "q", "answer": ["a"]}\n', 1, "got a list"),
        (
            '{"id": 7, "question": "q", "answer": "a"}\n{"id": "7", "question": "r", "answer": "b"}\n',
            2,
            "duplicate id '7'",
        ),
        ('{"id": [1], "question": "q", "answer": "a"}\n', 1, "field 'id'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, content: str | bytes, line: int, fragment: str) -> None:
    path = write(tmp_path, content, name="bad_input.jsonl")
    with pytest.raises(InputError) as caught:
        load_problems(path)
    message = str(caught.value)
    assert f"bad_input.jsonl:{line}:" in message
    assert fragment in message
    assert caught.value.line == line


def test_bad_accepted_list_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": "a"}\n{"question": "q", "answer": []}\n', "lists.jsonl")
    with pytest.raises(InputError, match=r"lists\.jsonl:2: field 'answer' holds a list"):
        load_problems(path, accept_lists=True)


def test_missing_alternative_keys_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path, '{"prompt": "q", "answer": "a"}\n', "alt.jsonl")
    with pytest.raises(InputError, match=r"alt\.jsonl:1: missing field 'question' or 'problem'"):
        load_problems(path, question_key=("question", "problem"))


def test_check_hook_rejects_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": "a"}\n{"question": "q", "answer": "bad"}\n', "hook.jsonl")
    with pytest.raises(InputError, match=r"hook\.jsonl:2: no bad answers"):
        load_problems(path, check=lambda p: "no bad answers" if p.answer == "bad" else None)


def test_read_jsonl_checks_required_fields(tmp_path: Path) -> None:
    path = write(tmp_path, '{"smiles": "CCO"}\n{"smiles": ""}\n', "req.jsonl")
    with pytest.raises(InputError, match=r"req\.jsonl:2: field 'smiles'"):
        read_jsonl(path, required=("smiles",))


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_file_without_records(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, content, name="empty.jsonl")
    with pytest.raises(InputError, match=r"empty\.jsonl: no records"):
        load_problems(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.jsonl: file not found"):
        load_problems(tmp_path / "nowhere.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        load_problems(tmp_path)


def test_reader_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": "a"}\n')
    load_problems(path)
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]
