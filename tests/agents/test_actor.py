"""How the actor is shown experience."""

from __future__ import annotations

from flexlearn.agents.actor import render_guidance
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
    assert "Wrong answer given: 600.00 (given in thousands)" in text and "Right answer: 600000.0" in text
    assert "Corrected solution: 1,000,000 - 400,000 = 600,000\nFinal answer: 600000.00" in text
    # A warning case without such an example keeps its summary.
    bare = Experience(Zone.WARNING, Level.CASE, "x", "Failed: something. Wrong answer: 1.")
    assert "Failed: something. Wrong answer: 1." in render_guidance([bare])
