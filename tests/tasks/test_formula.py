"""FormulaTask: ACE's exact float rule on the reply's final answer, the shipped data and its categories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexlearn.errors import InputError
from flexlearn.experience import Level, Zone
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.explore import ExploreConfig
from flexlearn.loop.learn import LearnConfig, learn
from flexlearn.models.function import FunctionModel
from flexlearn.tasks import Problem, Task, get_task
from flexlearn.tasks.formula import FormulaTask

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "benchmarks" / "data" / "finance_formula"
DEMO = ROOT / "src" / "flexlearn" / "data" / "demo" / "formula"
TASK = FormulaTask()


def problem(answer: str) -> Problem:
    return Problem(id="p", question="q", answer=answer)


def test_is_a_registered_task() -> None:
    assert isinstance(TASK, Task)
    assert isinstance(get_task("formula"), FormulaTask)
    assert TASK.name == "formula"
    assert "Final answer: NUMBER" in TASK.answer_format
    assert TASK.format_answer(problem("0.2")) == "Final answer: 0.2"
    assert TASK.render(Problem(id="p", question="How much?", answer="1")) == "How much?"


@pytest.mark.parametrize(
    ("reply", "reference", "extracted", "correct"),
    [
        ("Final answer: 0.20", "0.2", "0.20", True),
        ("Final answer: 2.00", "2.0", "2.00", True),
        ("Final answer: 1,000.00", "1000.0", "1,000.00", True),
        ("Final answer: -0.05", "-0.05", "-0.05", True),
        ("Final answer: 18", "0.18", "18", False),
        ("Final answer: 18.00", "0.18", "18.00", False),
        ("Final answer: 0.2", "0.21", "0.2", False),
        ("Final answer: 15%", "15.0", "15%", False),
        ("Final answer: $1,200", "1200.0", "$1,200", False),
        ("Final answer: 1 200", "1200.0", "1 200", False),
        # Decoration around the answer is not part of it.
        ("**Final answer:** **0.20**.", "0.2", "0.20", True),
        ("Final answer: `0.20`", "0.2", "0.20", True),
        ("Final answer: \\boxed{0.20}", "0.2", "0.20", True),
        ("Final answer:\n\n  0.20\n", "0.2", "0.20", True),
        # Math delimiters too, and a display block below the label is read through its closing line.
        ("Final answer: $0.20$", "0.2", "0.20", True),
        ("Final answer: \\( 0.20 \\)", "0.2", "0.20", True),
        ("Final answer:\n\\[\n\\boxed{0.20}\n\\]", "0.2", "0.20", True),
        ("Final answer:\n$$\n0.20\n$$\nDone.", "0.2", "0.20", True),
        ("Final answer:\n\\[\n0.20", "0.2", "\\[", False),
        # The last "Final answer:" wins, and wins over a box.
        ("Final answer: 3\nOn second thought:\nFinal answer: 0.20", "0.2", "0.20", True),
        ("\\boxed{5}\nFinal answer: 0.20", "0.2", "0.20", True),
        # No final line: the last box, else a reply that is a single number, else nothing.
        ("0.2 / 1 = 0.2, so \\boxed{3} or rather \\boxed{0.20}", "0.2", "0.20", True),
        ("0.20", "0.2", "0.20", True),
        ("  **1,000.00**.\n", "1000.0", "1,000.00", True),
        ("15%", "15.0", None, False),
        ("The ratio is 1 / 5 = 0.2, so 0.2.", "0.2", None, False),
        ("", "0.2", None, False),
    ],
)
def test_score(reply: str, reference: str, extracted: str | None, correct: bool) -> None:
    score = TASK.score(reply, problem(reference))
    assert (score.extracted, score.correct, score.value) == (extracted, correct, float(correct))
    assert TASK.extract_answer(reply) == extracted


def test_score_details_say_why() -> None:
    assert TASK.score("Final answer: 0.3", problem("0.2")).detail == "differs from the reference 0.2"
    assert TASK.score("Final answer: 15%", problem("15.0")).detail == "the final answer is not a number"
    assert TASK.score("I am not sure.", problem("0.2")).detail == "no final answer found in the reply"
    assert TASK.score("Final answer: 1", problem("one")).detail == "the reference is not a number"


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "\n\n",
        "Final answer:",
        "Final answer: **",
        "\\boxed{",
        "\\boxed{}",
        "\\boxed{\\boxed{\\boxed{",
        "}}}{{{\\boxed{1}}}}",
        "Final answer: nan",
        "Final answer: inf",
        "Final answer: 1e999999",
        "Final answer: " + "9" * 5000,
        "\x00\ud800\uffff",
        "%%% <garbage> {{{",
        "." * 1000,
        "Final answer: ...",
    ],
)
def test_garbage_never_raises(reply: str) -> None:
    score = TASK.score(reply, problem("0.2"))
    assert not score.correct


def test_load_rejects_a_reference_that_is_not_a_number(tmp_path: Path) -> None:
    path = tmp_path / "formula.jsonl"
    path.write_text('{"question": "q1", "answer": "0.5"}\n{"question": "q2", "answer": "about 5%"}\n')
    with pytest.raises(InputError, match=r"formula\.jsonl:2: answer 'about 5%' is not a number"):
        TASK.load(path)


@pytest.mark.parametrize(("name", "size"), [("train.jsonl", 500), ("val.jsonl", 300)])
def test_the_shipped_benchmark_data_loads_with_its_categories(name: str, size: int) -> None:
    problems = TASK.load(BENCHMARK / name)
    assert len(problems) == size
    assert len({p.meta["category"] for p in problems}) == 50
    for item in problems:
        # The formula's name is the problem's category, which learning uses to title its lessons.
        assert item.category == item.meta["category"]
        assert item.question.startswith(f"Use formula {item.meta['category']} to answer")
        assert TASK.score(TASK.format_answer(item), item).correct
        assert TASK.score(item.answer, item).correct


def test_the_benchmark_splits_are_disjoint() -> None:
    train = {p.question for p in TASK.load(BENCHMARK / "train.jsonl")}
    assert not train & {p.question for p in TASK.load(BENCHMARK / "val.jsonl")}


def test_the_demo_slice_is_cut_as_its_readme_says() -> None:
    train = (BENCHMARK / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    val = (BENCHMARK / "val.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert (DEMO / "train.jsonl").read_text(encoding="utf-8") == "".join(train[:60])
    assert (DEMO / "test.jsonl").read_text(encoding="utf-8") == "".join(val[0::7][:40])
    assert [len(TASK.load(DEMO / name)) for name in ("train.jsonl", "test.jsonl")] == [60, 40]
    assert (DEMO / "LICENSE.ace.txt").read_text() == (BENCHMARK / "LICENSE.ace.txt").read_text()


@pytest.mark.parametrize(("train_size", "test_size"), [(None, None), (2, 3), (5, 40)])
def test_the_formula_demo_learns_one_problem_per_formula_held_out(
    train_size: int | None, test_size: int | None
) -> None:
    from flexlearn.demo import FORMULA_TEST, FORMULA_TRAIN, plan

    demo = plan("formula", train_size=train_size, test_size=test_size)
    taught = [p.category for p in demo.train]
    assert len(taught) == len(set(taught)) == (train_size or FORMULA_TRAIN)
    assert 0 < len(demo.test) <= (test_size or FORMULA_TEST)
    assert {p.category for p in demo.test} <= set(taught)
    assert not {p.question for p in demo.train} & {p.question for p in demo.test}
    # The taught formulas are the first ones the held-out slice shows that the training slice has.
    trained = {p.category for p in TASK.load(DEMO / "train.jsonl")}
    shown = [p.category for p in TASK.load(DEMO / "test.jsonl") if p.category in trained]
    assert taught == list(dict.fromkeys(shown))[: len(taught)]


async def test_learning_titles_lessons_with_the_formula_name(tmp_path: Path) -> None:
    problems = TASK.load(DEMO / "train.jsonl")[:2]
    assert problems[0].meta["category"] != problems[1].meta["category"]

    def model(prompt, role, schema):  # type: ignore[no-untyped-def]
        if role == "actor":
            return "Final answer: 12345.67"
        if role == "critic":
            return json.dumps({"diagnosis": "the result is off", "next_step": "check the inputs"})
        if role == "distiller":
            lesson = {"zone": "warning", "level": "principle", "title": "numbers", "content": "Check every input."}
            return json.dumps({"category": "arithmetic", "experiences": [lesson]})
        return json.dumps({"action": "add", "reason": "new"})

    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1), concurrency=1)
    with Library.open(tmp_path / "l.flexlib") as lib:
        await learn(problems, task=TASK, agents=Agents.single(FunctionModel(model)), library=lib, config=config)
        titles = {(e.title, e.level) for e in lib.list(zone=Zone.WARNING)}
        # The distiller said "arithmetic" and the task is "formula": the data's formula name wins over both.
        assert {title for title, _ in titles} == {p.meta["category"] for p in problems}
        assert {level for _, level in titles} == {Level.PRINCIPLE, Level.CASE}
