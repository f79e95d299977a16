"""`Limits`: documented where users read it, and honoured by the agents when passed."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from flexlearn.agents.actor import Feedback, actor_prompt
from flexlearn.agents.critic import critique
from flexlearn.limits import DEFAULT_LIMITS, Limits
from flexlearn.models.function import FunctionModel
from flexlearn.tasks import Problem, get_task

DOC = Path(__file__).parents[1] / "docs" / "limits.md"


def test_every_limit_is_documented_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    fields = {f.name: str(f.default) for f in dataclasses.fields(Limits)}
    assert rows == fields


def test_limits_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.critic_attempt_chars = 1  # type: ignore[misc]


async def test_critic_cuts_the_attempt_to_the_given_limit() -> None:
    model = FunctionModel(lambda prompt, role, schema: json.dumps({"diagnosis": "d", "next_step": "n"}))
    attempt = "start " + "x" * 500 + " final 7"
    limits = dataclasses.replace(DEFAULT_LIMITS, critic_attempt_chars=60)
    await critique(model, question="q", attempt=attempt, extracted="7", reference=None, limits=limits)
    await critique(model, question="q", attempt=attempt, extracted="7", reference=None)
    cut, whole = (call.prompt.messages[1].content for call in model.calls)
    assert "[...]" in cut and "final 7" in cut and "x" * 100 not in cut
    assert "x" * 500 in whole


def test_actor_cuts_earlier_attempts_to_the_given_limit() -> None:
    task = get_task("math")
    problem = Problem(id="p", question="What is 3 x 4?", answer="12")
    feedback = [Feedback("a" * 200 + " answer 7", "added", "multiply")]
    limits = dataclasses.replace(DEFAULT_LIMITS, actor_retry_attempt_chars=50)
    user = actor_prompt(task, problem, feedback=feedback, limits=limits).messages[1].content
    assert "answer 7" in user and "a" * 100 not in user
