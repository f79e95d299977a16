"""ExactTask: normalized string match, with lists of accepted answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexlearn.tasks import Problem, Task
from flexlearn.tasks.exact import ExactTask, normalize

TASK = ExactTask()


def problem(answer: str, accepted: list[str] | None = None) -> Problem:
    return Problem(id="p", question="q", answer=answer, meta={"accepted": accepted} if accepted else {})


def test_is_a_task() -> None:
    assert isinstance(TASK, Task)
    assert TASK.name == "exact"
    assert TASK.format_answer(problem("Paris")) == "Final answer: Paris"
    assert TASK.render(problem("Paris")) == "q"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  The   Eiffel\tTower. ", "eiffel tower"),
        ('"Paris".', "paris"),
        ("\u201cParis!\u201d", "paris"),
        ("An apple", "apple"),
        ("A", "a"),
        ("Theory", "theory"),
        ("\uff21\uff22\uff23", "abc"),
        ("STRASSE", "strasse"),
        ("Stra\u00dfe", "strasse"),
        ("CCO.C", "cco.c"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("reply", "extracted"),
    [
        ("Thinking...\nFinal answer: Paris", "Paris"),
        ("Answer: B\nsome afterthought", "B"),
        ("final answer: x\nFINAL ANSWER: y", "y"),
        ("Let me think.\n\nParis\n\n", "Paris"),
        ("**Final Answer:** *Paris*", "Paris"),
    ],
)
def test_extract_answer(reply: str, extracted: str) -> None:
    assert TASK.extract_answer(reply) == extracted


def test_scores() -> None:
    assert TASK.score("Final answer: the eiffel tower", problem("Eiffel Tower")).correct
    wrong = TASK.score("Final answer: Louvre", problem("Eiffel Tower"))
    assert (wrong.correct, wrong.value, wrong.extracted) == (False, 0.0, "Louvre")
    empty = TASK.score("  \n ", problem("x"))
    assert (empty.correct, empty.extracted) == (False, None)


def test_accepted_answers_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "capitals.jsonl"
    path.write_text('{"question": "Capital of the Netherlands?", "answer": ["Amsterdam", "The Hague"]}\n')
    (item,) = TASK.load(path)
    assert item.answer == "Amsterdam"
    assert TASK.score("Final answer: the hague", item).correct
    assert TASK.score("Amsterdam.", item).correct
    assert not TASK.score("Final answer: Rotterdam", item).correct


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("The capital of France is Paris.", "Paris"),
        ("I think the answer is Paris.", "Paris"),
        ("It is hot today.\nThe answer is: **went**", "went"),
        ("Thinking...\n\\boxed{Au}", "Au"),
        ("The past tense of go is went.", "went"),
        ("Paris", "Paris"),
    ],
)
def test_a_chat_models_sentence_gives_its_answer(reply: str, expected: str) -> None:
    task = ExactTask()
    assert task.extract_answer(reply) == expected
    assert task.score(reply, Problem(id="p", question="q", answer=expected)).correct


def test_a_statement_about_something_else_is_not_the_answer() -> None:
    assert not ExactTask().score("Paris is the capital.", Problem(id="p", question="q", answer="Paris")).correct
