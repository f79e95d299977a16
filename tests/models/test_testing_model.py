"""`TestModel` answers every call by itself: schema-valid replies for the critic, the distiller and the updater, so
a whole learn-and-evaluate run needs no hand-written reply function."""

from __future__ import annotations

from pathlib import Path

import pytest

import flexlearn
from flexlearn.agents.critic import FeedbackReply, JudgementReply
from flexlearn.agents.distiller import DistilledReply
from flexlearn.agents.updater import DecisionReply
from flexlearn.models import Prompt, TestModel
from flexlearn.models.base import Message
from flexlearn.models.structured import parse_structured
from flexlearn.models.testing import instance
from flexlearn.tasks import Problem


@pytest.mark.parametrize("reply", [FeedbackReply, JudgementReply, DistilledReply, DecisionReply])
async def test_structured_replies_validate_against_each_agents_schema(reply: type) -> None:
    model = TestModel()
    answer = await model.generate(Prompt([Message("user", "hi")]), role="x", schema=reply.model_json_schema())
    value, problem = parse_structured(answer.text, reply)
    assert value is not None, problem


def test_instance_follows_bounds_refs_unions_and_overrides() -> None:
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 2},
            "none": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
            "short": {"type": "string", "minLength": 3, "maxLength": 10},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 1}]},
            "kind": {"enum": ["b", "a"]},
            "flag": {"type": "boolean"},
        },
    }
    assert instance(schema, values={"flag": True}) == {
        "items": [{"n": 3}, {"n": 3}],
        "none": [],
        "short": "Check each",
        "maybe": 2.0,
        "kind": "b",
        "flag": True,
    }


def test_a_learn_and_evaluate_run_on_its_own(tmp_path: Path) -> None:
    problems = [Problem(id=f"p{i}", question=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(3)]
    model = TestModel(values={"correct": False, "action": "add"})
    with flexlearn.Library.open(tmp_path / "lib.flexlib") as lib:
        summary = flexlearn.learn(problems, task="math", agents=model, library=lib, rollouts=1, rounds=2)
        assert summary.total == 3 and summary.failed == 0
        assert lib.count() > 0  # the distiller's lessons, added by the updater
        [result] = flexlearn.evaluate(problems, task="math", agents=model, library=lib, modes="flex")
    assert result.n == 3 and result.correct == 1  # "0" is right only for 0 + 0
    assert {"actor", "critic", "distiller"} <= set(model.roles())
