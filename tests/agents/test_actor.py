"""How the actor is shown experience."""

from __future__ import annotations

import pytest

from flexlearn.agents.actor import render_guidance
from flexlearn.agents.relation import scale_relation
from flexlearn.experience import Experience, Level, Zone


def test_a_failed_case_is_shown_with_its_problem_in_full_and_its_fix() -> None:
    question = "A firm has current assets of $1,000,000 and liabilities of $400,000. " * 6 + "Working capital?"
    right = Experience(
        Zone.WARNING,
        Level.CASE,
        "Working Capital",
        "Failed: a firm... Wrong answer: 600.00. Right answer: 600000.0.",
        examples=[f"Q: {question}\nWrong: 600.00 (given in thousands)\nRight answer: 600000.0"],
    )
    corrected = Experience(
        Zone.WARNING,
        Level.CASE,
        "Working Capital",
        "Failed then solved.",
        examples=[f"Q: {question}\nWrong: 600.00\nCorrected: 1,000,000 - 400,000 = 600,000\nFinal answer: 600000.00"],
    )
    text = render_guidance([right, corrected])
    assert text.count(f"Example problem: {question}") == 2  # in full, figures and all
    assert "Wrong answer given: 600.00 (given in thousands)" in text
    assert "Right answer: 600000.0 (1,000 times the answer given)" in text  # the relation a small model misses
    assert "Corrected solution: 1,000,000 - 400,000 = 600,000\nFinal answer: 600000.00" in text
    # A warning case without such an example keeps its summary.
    bare = Experience(Zone.WARNING, Level.CASE, "x", "Failed: something. Wrong answer: 1.")
    assert "Failed: something. Wrong answer: 1." in render_guidance([bare])


@pytest.mark.parametrize(
    ("wrong", "right", "relation"),
    [
        ("-80.00 (the formula is wrong)", "-80000000.0", "1,000,000 times the answer given"),
        ("4.00", "0.04", "1/100 of the answer given"),
        ("5.50 (a slip in the beta term)", "0.06", "about 1/100 of the answer given"),  # 0.055, rounded
        ("1,008.00", "998000.0", "about 1,000 times the answer given"),
        ("12", "-12", "the answer given with the opposite sign"),
        ("-3", "300", "100 times the answer given with the opposite sign"),
        # No relation worth naming: a near miss, an unrelated number, a wrong answer that is a whole solution.
        ("1.77", "1.78", ""),
        ("25.00", "0.2", ""),
        ("22,832.81", "21462.58", ""),
        ("To find the ratio, divide 5 by 25", "0.2", ""),
        ("0", "5", ""),
        ("5", "5", ""),
        ("5", "about 500", ""),
    ],
)
def test_the_scale_relation_of_a_wrong_and_a_right_answer(wrong: str, right: str, relation: str) -> None:
    assert scale_relation(wrong, right) == relation


def test_material_without_a_worked_solution_closes_with_the_answer_format() -> None:
    from flexlearn.agents.actor import actor_prompt
    from flexlearn.tasks import Problem, get_task

    task = get_task("formula")
    failed = Experience(Zone.WARNING, Level.CASE, "ROI", "Failed: ROI of 200 on 250. Wrong answer: 25.00.")
    user = actor_prompt(task, Problem("t:1", "ROI of 10 on 15?", "0.5"), guidance=[failed]).messages[1].content
    material, _, problem = user.partition("Problem:\n")
    closing = f"End of the reference material. Solve the problem below step by step. {task.answer_format}"
    assert material.rstrip().endswith(closing)
    assert problem == "ROI of 10 on 15?"  # the problem stays last: restated after it, the model answered bare
    # A worked solution shows the answer line itself: the material is not closed with it then.
    worked = Experience(
        Zone.GOLDEN,
        Level.CASE,
        "ROI",
        "Solved.",
        examples=["Q: ROI of 50 on 60?\nA: 10 / 50 = 0.2\nFinal answer: 0.20"],
    )
    shown = actor_prompt(task, Problem("t:1", "ROI of 10 on 15?", "0.5"), guidance=[failed, worked])
    assert "Final answer: 0.20" in shown.messages[1].content and closing not in shown.messages[1].content
    # Without experience the prompt is vanilla's; rendered without a task, the material has no closing line.
    assert "End of the reference material" not in actor_prompt(task, Problem("t:2", "x?", "1")).messages[1].content
    assert "End of the reference material" not in render_guidance([failed])
