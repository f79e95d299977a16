"""ReplyMemo: a request asked again gets the reply it got before, without a call; its cost is still reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.models.base import GenerationOptions, Message, Prompt
from flexlearn.models.function import FunctionModel
from flexlearn.models.memo import ReplyMemo, is_deterministic
from flexlearn.tasks import Problem, get_task


def prompt(text: str) -> Prompt:
    return Prompt([Message("system", "Solve."), Message("user", text)])


def counting() -> FunctionModel:
    """Answers each request with how many calls it has had, so a reply asked twice would differ."""
    model = FunctionModel(lambda p, role, schema: f"reply {len(model.calls)} to {p.messages[-1].content}")
    return model


async def test_a_request_asked_again_gets_the_same_reply_without_a_call() -> None:
    inner = counting()
    memo = ReplyMemo(inner)
    first = await memo.generate(prompt("2+2?"))
    again = await memo.generate(prompt("2+2?"))
    assert again.text == first.text == "reply 1 to 2+2?"
    assert len(inner.calls) == 1
    # What it reports costing is what the call that made it cost; the memo counts what it saved.
    assert again.usage == first.usage and first.usage.prompt_tokens > 0
    assert memo.hits == 1 and memo.reused == first.usage
    assert again.latency_s == 0.0


async def test_anything_that_decides_the_reply_makes_another_request() -> None:
    inner = counting()
    memo = ReplyMemo(inner)
    await memo.generate(prompt("2+2?"))
    await memo.generate(prompt("2+3?"))
    await memo.generate(prompt("2+2?"), role="critic")
    await memo.generate(prompt("2+2?"), schema={"type": "object"})
    await memo.generate(prompt("2+2?"), options=GenerationOptions(max_tokens=10))
    assert len(inner.calls) == 5 and memo.hits == 0
    # Another salt (e.g. the backend's reply revision) is another memory.
    other = ReplyMemo(inner, salt="revision-3")
    assert other.key(prompt("2+2?"), "actor", None, None) != memo.key(prompt("2+2?"), "actor", None, None)


async def test_a_sampled_request_always_reaches_the_model() -> None:
    inner = counting()
    memo = ReplyMemo(inner)
    hot = GenerationOptions(temperature=0.7)
    replies = [(await memo.generate(prompt("2+2?"), options=hot)).text for _ in range(2)]
    assert replies == ["reply 1 to 2+2?", "reply 2 to 2+2?"] and memo.hits == 0
    # temperature 0, given or left to the greedy default, is kept.
    await memo.generate(prompt("2+2?"), options=GenerationOptions(temperature=0.0))
    await memo.generate(prompt("2+2?"), options=GenerationOptions(temperature=0.0))
    assert memo.hits == 1


async def test_a_later_process_reuses_the_kept_replies_and_a_torn_last_line_costs_only_that_reply(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replies.jsonl"
    inner = counting()
    memo = ReplyMemo(inner, path)
    await memo.generate(prompt("a"))
    await memo.generate(prompt("b"))
    # A crash while writing a third reply leaves half a line.
    with path.open("a") as fh:
        fh.write('{"key": "abc", "text": "half')
    later_inner = counting()
    later = ReplyMemo(later_inner, path)
    assert (await later.generate(prompt("a"))).text == "reply 1 to a"
    assert (await later.generate(prompt("b"))).text == "reply 2 to b"
    assert later_inner.calls == [] and later.hits == 2
    # A new reply starts a line of its own: every whole line reads back.
    await later.generate(prompt("c"))
    rows = [json.loads(line) for line in path.read_text().splitlines()[:2] + path.read_text().splitlines()[3:]]
    assert [r["text"] for r in rows] == ["reply 1 to a", "reply 2 to b", "reply 1 to c"]
    assert (await ReplyMemo(counting(), path).generate(prompt("c"))).text == "reply 1 to c"


def capitals(prompt, role, schema):  # type: ignore[no-untyped-def]
    if role == "actor":
        return "Final answer: city0"
    return json.dumps({"correct": True, "diagnosis": "", "next_step": ""})


TASK = get_task("exact")
PROBLEMS = [Problem(id=f"p{i}", question=f"Capital of country {i}?", answer=f"city{i}") for i in range(3)]


async def test_evaluated_together_on_an_embedded_model_the_agents_first_attempt_is_vanillas_reply() -> None:
    """Agent mode opens with vanilla's request: evaluated beside vanilla on a model that replies the same way every
    time, that attempt is not asked again, and the agent's item reports the calls and tokens it costs alone."""
    alone = FunctionModel(capitals, name="local:scripted")
    [agent_alone] = await evaluate(PROBLEMS, task=TASK, modes=[Mode.AGENT], agents=Agents.single(alone))
    assert len([c for c in alone.calls if c.role == "actor"]) == 3

    model = FunctionModel(capitals, name="local:scripted")
    vanilla, agent = await evaluate(PROBLEMS, task=TASK, modes=[Mode.VANILLA, Mode.AGENT], agents=Agents.single(model))
    assert len([c for c in model.calls if c.role == "actor"]) == 3  # vanilla's; the agent's first attempts reused
    assert len([c for c in model.calls if c.role != "actor"]) == 3  # the agent's judge, asked as before
    for together, by_itself in zip(agent.items, agent_alone.items, strict=True):
        assert together.reply == by_itself.reply and together.correct == by_itself.correct
        assert together.calls == by_itself.calls == 2
        assert (together.prompt_tokens, together.completion_tokens) == (
            by_itself.prompt_tokens,
            by_itself.completion_tokens,
        )
    assert [i.reply for i in vanilla.items] == ["Final answer: city0"] * 3


@pytest.mark.parametrize(
    ("name", "config"),
    [("openai:hosted", EvalConfig()), ("local:scripted", EvalConfig(actor=GenerationOptions(temperature=0.7)))],
)
async def test_a_model_that_may_answer_otherwise_is_asked_again(name: str, config: EvalConfig) -> None:
    model = FunctionModel(capitals, name=name)
    await evaluate(PROBLEMS, task=TASK, modes=[Mode.VANILLA, Mode.AGENT], agents=Agents.single(model), config=config)
    assert len([c for c in model.calls if c.role == "actor"]) == 6


def test_only_an_embedded_model_at_temperature_0_counts_as_deterministic() -> None:
    local = FunctionModel(capitals, name="local:qwen2.5-coder-1.5b")
    assert is_deterministic(local) and is_deterministic(local, GenerationOptions(temperature=0.0))
    assert not is_deterministic(local, GenerationOptions(temperature=0.2))
    assert not is_deterministic(FunctionModel(capitals, name="openai:gpt"), GenerationOptions(temperature=0.0))
