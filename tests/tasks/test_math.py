"""MathTask: extraction and math-verify equivalence on real MATH-500 and AIME records, in any thread."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flexlearn.tasks import Problem, Task
from flexlearn.tasks import math as math_module
from flexlearn.tasks.math import MAX_ANSWER_CHARS, MathTask

FIXTURES = Path(__file__).parent / "fixtures"
TASK = MathTask()


def problem(answer: str) -> Problem:
    return Problem(id="p", question="q", answer=answer)


def test_is_a_task() -> None:
    assert isinstance(TASK, Task)
    assert TASK.name == "math"
    assert "\\boxed{" in TASK.answer_format


def test_loads_math500_and_aime_files() -> None:
    math500 = TASK.load(FIXTURES / "math500_sample.jsonl")
    assert math500[0].question.startswith("Convert the point $(0,3)$")
    assert TASK.render(math500[0]) == math500[0].question
    aime = TASK.load(FIXTURES / "aime25_sample.jsonl")
    assert [p.answer for p in aime] == ["70", "588", "16"]
    flex = TASK.load(FIXTURES / "flex_aime_test_tail.jsonl")
    assert [p.id for p in flex] == ["flex_aime_test_tail.jsonl:1", "flex_aime_test_tail.jsonl:2"]


def test_reference_solutions_score_right_and_others_wrong() -> None:
    problems = TASK.load(FIXTURES / "math500_sample.jsonl")
    for index, item in enumerate(problems):
        assert TASK.score(item.meta["solution"], item).correct, item.answer
        assert TASK.score(TASK.format_answer(item), item).correct, item.answer
        other = problems[(index + 1) % len(problems)]
        assert not TASK.score(other.meta["solution"], item).correct, (item.answer, other.answer)


@pytest.mark.parametrize(
    ("reference", "reply", "extracted"),
    [
        ("70", "The bases are 21 and 49, so the sum is $\\boxed{70}$.", "70"),
        ("70", "Final answer: 70", "70"),
        ("70", "Final answer: $070$", "070"),
        ("70", "Final answer: 70.", "70"),
        ("\\frac{1}{2}", "Final answer: $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("70", "Adding up, we get 21 + 49 = 70.", "70"),
        ("70", "I first thought \\boxed{49}, but I missed 21, so \\boxed{70}", "70"),
        ("\\frac{1}{2}", "So $p = \\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("\\frac{1}{2}", "Final answer: \\boxed{0.5}", "0.5"),
        ("0.5", "\\boxed{\\dfrac12}", "\\dfrac12"),
        ("\\frac{14}{3}", "\\boxed{\\dfrac{14}{3}}", "\\dfrac{14}{3}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{(3, \\pi/2)}", "(3, \\pi/2)"),
        ("3\\sqrt{13}", "\\boxed{\\sqrt{117}}", "\\sqrt{117}"),
        ("\\text{Evelyn}", "\\boxed{\\text{Evelyn}}", "\\text{Evelyn}"),
        ("$5$", "\\fbox{5}", "5"),
        ("\\boxed{5}", "**Final answer:** $5$", "5"),
    ],
)
def test_right_answers(reference: str, reply: str, extracted: str) -> None:
    score = TASK.score(reply, problem(reference))
    assert (score.correct, score.value, score.extracted) == (True, 1.0, extracted), score.detail


@pytest.mark.parametrize(
    ("reference", "reply", "extracted"),
    [
        ("70", "I first thought \\boxed{70}, but no: \\boxed{49}", "49"),
        ("70", "\\boxed{71}", "71"),
        ("\\frac{14}{3}", "\\boxed{\\frac{3}{14}}", "\\frac{3}{14}"),
        ("p - q", "\\boxed{q - p}", "q - p"),
        ("90^\\circ", "Final answer: 45^\\circ", "45^\\circ"),
    ],
)
def test_wrong_answers(reference: str, reply: str, extracted: str) -> None:
    score = TASK.score(reply, problem(reference))
    assert (score.correct, score.value, score.extracted) == (False, 0.0, extracted)
    assert score.detail == "not equivalent to the reference"


@pytest.mark.parametrize("reply", ["", "I am not sure how to solve this.", "Put the answer in \\boxed{}."])
def test_no_answer(reply: str) -> None:
    score = TASK.score(reply, problem("70"))
    assert (score.correct, score.extracted) == (False, None)
    assert "no final answer" in score.detail


def test_unparseable_answer_scores_zero() -> None:
    score = TASK.score("\\boxed{\\frac{}{}}", problem("70"))
    assert not score.correct
    assert score.detail


def test_overlong_answer_is_not_compared() -> None:
    score = TASK.score("\\boxed{" + "1+" * MAX_ANSWER_CHARS + "1}", problem("70"))
    assert not score.correct
    assert score.extracted is not None and len(score.extracted) == MAX_ANSWER_CHARS
    assert "over the 1000 limit" in score.detail


def test_comparison_errors_score_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(math_module, "verify", broken)
    score = TASK.score("\\boxed{0.5}", problem("\\frac{1}{2}"))
    assert (score.correct, score.extracted, score.detail) == (False, "0.5", "comparison failed: RuntimeError")


def test_format_answer() -> None:
    assert TASK.format_answer(problem("\\frac{14}{3}")) == "\\boxed{\\frac{14}{3}}"
    assert TASK.format_answer(problem("$5$")) == "\\boxed{5}"


@pytest.mark.parametrize(
    "huge",
    [
        "2^{2^{100}}",
        "10^{10^{7}}",
        "\\sqrt{2^{30000}+1}",
        "\\frac{2^{99999}}{3^{60000}}",
        "\\sqrt{2}^{10^{9}}",
        "(10^{5})!",
        "\\binom{10^{9}}{10^{8}}",
        "(x+1)^{100000}",
        "\\begin{pmatrix} 2^{2^{100}} \\\\ 1 \\end{pmatrix}",
    ],
)
def test_runaway_answers_are_refused_quickly_off_the_main_thread(huge: str) -> None:
    # Without the screen, comparing 2^{2^{100}} off the main thread freezes the whole process (GIL held in C),
    # and the root of 2^{30000}+1 runs for minutes (sympy tries to factor it).
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        score = pool.submit(TASK.score, f"\\boxed{{{huge}}}", problem("5")).result(timeout=30)
    assert not score.correct
    assert "not compared" in score.detail
    assert time.monotonic() - started < 10


def test_modest_numbers_still_compare() -> None:
    assert TASK.score("\\boxed{2^{2005}}", problem("2^{2005}")).correct
    assert TASK.score("\\boxed{1024}", problem("2^{10}")).correct
    assert TASK.score("\\boxed{\\binom{100}{50}}", problem("\\frac{100!}{(50!)^2}")).correct
    assert TASK.score("\\boxed{(x+1)^{2}}", problem("x^2+2x+1")).correct


def test_scoring_in_worker_threads_matches_main_thread() -> None:
    problems = TASK.load(FIXTURES / "math500_sample.jsonl") + TASK.load(FIXTURES / "aime25_sample.jsonl")
    replies = [p.meta.get("solution", f"Final answer: {p.answer}") for p in problems]
    replies += ["\\boxed{1}" for _ in problems]
    pairs = list(zip(replies, problems + problems, strict=True))
    in_main = [TASK.score(reply, item) for reply, item in pairs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        in_threads = list(pool.map(lambda pair: TASK.score(*pair), pairs))
    assert in_threads == in_main
    assert [s.correct for s in in_main] == [True] * len(problems) + [False] * len(problems)


def test_timeout_disabled_warning_is_filtered() -> None:
    record = logging.LogRecord("math_verify.parser", logging.WARNING, __file__, 1, "Timeout is disabled ...", (), None)
    assert not logging.getLogger("math_verify.parser").filter(record)


def test_parses_are_remembered_only_when_they_found_something(monkeypatch: pytest.MonkeyPatch) -> None:
    # A reference is parsed again at every attempt of a problem, and a wrong answer is often repeated: each parse
    # is 0.4 ms of a learning run's CPU or more. An empty parse (possibly a timeout) is tried again.
    calls: list[str] = []
    real_parse = math_module.parse

    def counting(text: str, **kwargs: object) -> list[object]:
        calls.append(text)
        return real_parse(text, **kwargs)

    monkeypatch.setattr(math_module, "parse", counting)
    monkeypatch.setattr(math_module, "_PARSED", OrderedDict())
    replies = ("\\boxed{9174/2}", "\\boxed{9174/2}", "\\boxed{9173/2}")
    first = [TASK.score(reply, problem("9173/2")) for reply in replies]
    assert [s.correct for s in first] == [False, False, True]
    assert sorted(calls) == ["\\boxed{9173/2}", "\\boxed{9174/2}"]  # 9173/2 is the reference, then an answer
    again = [TASK.score(reply, problem("9173/2")) for reply in replies]
    assert again == first and len(calls) == 2
    calls.clear()
    assert math_module._parse_boxed("}{", 5) == [] and math_module._parse_boxed("}{", 5) == []
    assert calls == ["\\boxed{}{}"] * 2
    # Off the main thread math-verify runs without its timeouts: those parses are kept apart.
    calls.clear()
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(TASK.score, "\\boxed{9174/2}", problem("9173/2")).result() == first[0]
    assert sorted(calls) == ["\\boxed{9173/2}", "\\boxed{9174/2}"]


@pytest.mark.parametrize(
    ("reference", "answer"),
    [
        ("3", "3.0"),
        ("0.5", "0.50"),
        ("+5", "5"),
        ("-0", "0"),
        ("007", "7"),
        ("-3", "3"),
        ("12", "13"),
        ("1.000001", "1.000002"),
        ("2.5", "2.500000"),
        ("100000000000000000000001", "100000000000000000000000"),
        ("18", "18"),
    ],
)
def test_plain_numbers_compare_as_math_verify_does(reference: str, answer: str) -> None:
    # Two plain decimals skip math-verify: the verdict must be the one math-verify gives.
    expected = math_module.verify(
        math_module.parse(f"\\boxed{{{reference}}}"), math_module.parse(f"\\boxed{{{answer}}}")
    )
    assert TASK.score(f"\\boxed{{{answer}}}", problem(reference)).correct == expected


def test_plain_numbers_never_import_math_verify() -> None:
    # Importing math-verify and sympy takes about half a second: a run on plain numbers must not wait for it.
    code = (
        "import sys\n"
        "from flexlearn.tasks.base import Problem\n"
        "from flexlearn.tasks.math import MathTask\n"
        "reply = 'So \\\\boxed{1,2}? No: \\\\boxed{12.0}'\n"
        "score = MathTask().score(reply, Problem(id='p', question='q', answer='12'))\n"
        "assert score.correct, score\n"
        "assert 'math_verify' not in sys.modules and 'sympy' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
