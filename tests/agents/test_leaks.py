"""The critic's feedback never carries the reference answer in a form the task's scorer accepts."""

from __future__ import annotations

import pytest

from flexlearn.agents.leaks import MASK, leaked_spans, redact
from flexlearn.tasks import Problem, get_task


def _problem(answer: str) -> Problem:
    return Problem(id="p", question="q", answer=answer)


@pytest.mark.parametrize(
    ("task", "answer", "feedback", "leak"),
    [
        ("gsm8k", "400 * 3\n#### 1200", "The total should be 1,200 dollars.", "1,200"),
        ("gsm8k", "#### 1200", "Multiply 400 by 3 to get $1200.00 in all.", "1200.00"),
        ("math", "\\frac{1}{2}", "The probability is 0.5, not 0.25.", "0.5"),
        ("math", "\\frac{1}{2}", "It should come to $\\frac{2}{4}$ once you simplify.", "\\frac{2}{4}"),
        ("exact", "Eiffel Tower", "You named the Louvre; the answer is the eiffel tower.", "eiffel tower"),
        ("exact", "went", "The correct past tense is 'went', not goed.", "went"),
        ("formula", "0.2", "Divide the gain by the cost: it comes to 0.20, not 20.", "0.20"),
        ("formula", "1000.0", "Subtract the two totals to get 1,000.00 in all.", "1,000.00"),
    ],
)
def test_equivalent_forms_of_the_answer_are_masked(task: str, answer: str, feedback: str, leak: str) -> None:
    the_task, problem = get_task(task), _problem(answer)
    assert leaked_spans(the_task, problem, feedback)  # an exact-string check would miss most of these
    safe = redact(the_task, problem, feedback)
    assert safe is not None and MASK in safe and leak not in safe
    assert leaked_spans(the_task, problem, safe) == []


def test_numbers_that_are_not_the_answer_stay() -> None:
    task, problem = get_task("gsm8k"), _problem("#### 72")
    text = "You added 48 and 12; May's sales were half of 48, so 24 clips."
    assert redact(task, problem, text) == text


def test_masking_a_short_number_does_not_eat_a_longer_one() -> None:
    task, problem = get_task("gsm8k"), _problem("#### 2")
    masked = redact(task, problem, "Step 12 is fine, but the answer is 2.")
    assert masked == f"Step 12 is fine, but the answer is {MASK}."


def test_retro_reordered_reactants_are_a_leak() -> None:
    pytest.importorskip("rdkit")
    task = get_task("retro")
    problem = Problem(id="r", question="CC(=O)Nc1ccccc1", answer="CC(=O)Cl.Nc1ccccc1")
    feedback = "Use an acylation: Nc1ccccc1.CC(=O)Cl would give the product."
    safe = redact(task, problem, feedback)
    assert safe is not None and "Nc1ccccc1.CC(=O)Cl" not in safe
