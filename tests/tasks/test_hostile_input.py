"""Problem files built to break the reader: each is refused with its file and line, before any model call."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlearn.errors import ConfigError, InputError
from flexlearn.tasks import get_task
from flexlearn.tasks.loader import DEFAULT_MAX_QUESTION_CHARS, load_problems


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_deeply_nested_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q", "answer": "1"}', '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InputError, match=r"train\.jsonl:2: JSON nested too deeply"):
        load_problems(path)


def test_a_lone_surrogate_escape_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "q \\ud800", "answer": "1"}')
    with pytest.raises(InputError, match=r"train\.jsonl:1: .*lone surrogate"):
        get_task("exact").load(path)


def test_a_paired_surrogate_escape_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "smile \\ud83d\\ude00", "answer": "1"}')
    assert load_problems(path)[0].question == "smile \U0001f600"


def test_an_overlong_question_is_refused_with_the_way_to_allow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '{"question": "' + "x" * (DEFAULT_MAX_QUESTION_CHARS + 1) + '", "answer": "1"}')
    with pytest.raises(InputError, match=r"train\.jsonl:1: .*over the limit of 50,000.*FLEX_MAX_QUESTION_CHARS"):
        load_problems(path)
    monkeypatch.setenv("FLEX_MAX_QUESTION_CHARS", str(DEFAULT_MAX_QUESTION_CHARS + 1))
    assert len(load_problems(path)) == 1
    monkeypatch.setenv("FLEX_MAX_QUESTION_CHARS", "lots")
    with pytest.raises(ConfigError, match="FLEX_MAX_QUESTION_CHARS"):
        load_problems(path)
