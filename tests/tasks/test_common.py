"""Answer-extraction helpers."""

from __future__ import annotations

import pytest

from flexlearn.tasks.common import (
    final_answer_line,
    first_number,
    last_boxed,
    last_number,
    leading_number,
    numbers,
    strip_math_delimiters,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("first \\boxed{3}, then \\boxed{4}", "4"),
        ("\\fbox{70}", "70"),
        ("\\boxed {  7 }", "7"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{\\boxed{5}}", "5"),
        ("\\boxed{3} and then cut off \\boxed{\\frac{1", "3"),
        ("\\boxed{12} as asked: put it in \\boxed{}", "12"),
        ("no box here", None),
        ("\\boxed{", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("work\nFinal answer: 42\n", "42"),
        ("Final answer: 1\nmore\nfinal ANSWER: 2", "2"),
        ("**Final answer:** Paris", "Paris"),
        ("**Final answer**: `x = 3`", "x = 3"),
        ("Final   answer：7", "7"),
        ("Final answer:\n\n  **Rome**  \n", "Rome"),
        ("Final answer:", None),
        ("Final answer:\n\\[\n\\boxed{5}\n\\]\nThat is all.", "\\[ \\boxed{5} \\]"),
        ("Final answer: $$\n5 $$", "$$ 5 $$"),
        ("Final answer:\n\\[\n5\n", "\\["),
        ("the answer is 5", None),
    ],
)
def test_final_answer_line(text: str, expected: str | None) -> None:
    assert final_answer_line(text) == expected


def test_final_answer_line_with_more_labels() -> None:
    assert final_answer_line("Answer: B", ("final answer", "answer")) == "B"
    assert final_answer_line("Answer: B") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is $1,234.", ["1234"]),
        ("5-3 = 2", ["5", "3", "2"]),
        ("x = -5, y = .5", ["-5", ".5"]),
        ("1,2,3", ["1", "2", "3"]),
        ("1{,}000 and 2\\,500 and \u22127", ["1000", "2500", "-7"]),
        ("v3.2.1 is 40km", ["40"]),
        ("no digits", []),
    ],
)
def test_numbers(text: str, expected: list[str]) -> None:
    assert numbers(text) == expected


def test_first_and_last_number() -> None:
    assert first_number("from 3 to 18.50 dollars") == "3"
    assert last_number("from 3 to 18.50 dollars") == "18.50"
    assert last_number("none") is None and first_number("none") is None


def test_leading_number() -> None:
    assert leading_number("  -22,832.81 (the discount was wrong)") == "-22832.81"
    assert leading_number("To find 5 of 25") is None  # a number later on is not the one the text opens with
    assert leading_number("$5") is None and leading_number("") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("$x$", "x"), ("$$ 1 $$", "1"), ("\\(a\\)", "a"), ("\\[b\\]", "b"), ("$5", "$5"), ("7", "7")],
)
def test_strip_math_delimiters(text: str, expected: str) -> None:
    assert strip_math_delimiters(text) == expected
