"""The tool-using actor on the real embedded coder model (slow): it writes Python, the block runs in the sandbox,
and the output is in the prompt of the next call."""

from __future__ import annotations

import pytest

from flexlearn.agents.actor import actor_prompt
from flexlearn.agents.tool_actor import act_with_tools
from flexlearn.agents.tools import ToolSet
from flexlearn.models.base import GenerationOptions
from flexlearn.models.uri import from_uri
from flexlearn.tasks import get_task
from flexlearn.tasks.base import Problem

pytestmark = [pytest.mark.slow]

QUESTION = (
    "A bakery sells muffins in boxes of 6. On Monday it sold 37 boxes and on Tuesday 48 boxes. "
    "Each muffin costs $2. How many dollars did the bakery take for muffins on the two days?"
)


async def test_coder_model_calls_python_and_reads_the_output() -> None:
    model = from_uri("local:qwen2.5-coder-1.5b")
    task = get_task("gsm8k")
    prompt = actor_prompt(task, Problem(id="muffins", question=QUESTION, answer="1020"))
    options = GenerationOptions(max_tokens=300, temperature=0.0)
    attempt = await act_with_tools(model, prompt, tools=ToolSet(), options=options, max_steps=2)
    await model.aclose()
    assert attempt.tool_calls >= 1, attempt.text
    first = attempt.steps[0]
    assert first.kind == "python"
    assert attempt.calls >= 2  # a call followed the block, and its prompt carried the output
    assert f"Output:\n{first.observation.splitlines()[0]}" in attempt.prompt_text
