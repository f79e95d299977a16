"""An evaluation against a model that cannot answer fails loudly and early instead of reporting 0%."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flexlearn.errors import LibraryError, ModelError
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.models.function import FunctionModel
from flexlearn.tasks import Problem, get_task

TASK = get_task("exact")
PROBLEMS = [Problem(id=f"p{i}", question=f"Capital of country {i}?", answer=f"city{i}") for i in range(20)]


async def dead(prompt, role, schema):  # type: ignore[no-untyped-def]
    await asyncio.sleep(0.01)  # as a real call yields to the others while it waits
    raise ModelError("connection refused (after 6 attempts)")


async def test_a_dead_endpoint_stops_after_the_first_failures_with_a_message() -> None:
    model = FunctionModel(dead)
    with pytest.raises(ModelError, match=r"first 5 items all failed .*unreachable.*connection refused"):
        await evaluate(PROBLEMS, task=TASK, modes=[Mode.VANILLA], agents=Agents.single(model))
    assert len(model.calls) < len(PROBLEMS)  # stopped early, not after burning the whole set


async def test_a_mode_where_most_items_fail_is_an_error() -> None:
    def mostly_failing(prompt, role, schema):  # type: ignore[no-untyped-def]
        if "country 0?" in prompt.messages[-1].content or "country 1?" in prompt.messages[-1].content:
            return "Final answer: city0"
        raise ModelError("HTTP 500: internal error")

    with pytest.raises(ModelError, match=r"18 of 20 vanilla items failed at the model \(more than 50%\)"):
        await evaluate(
            PROBLEMS,
            task=TASK,
            modes=[Mode.VANILLA],
            agents=Agents.single(FunctionModel(mostly_failing)),
            config=EvalConfig(concurrency=1),
        )


async def test_a_few_failures_are_recorded_not_fatal() -> None:
    def flaky(prompt, role, schema):  # type: ignore[no-untyped-def]
        if "country 3?" in prompt.messages[-1].content:
            raise ModelError("HTTP 500")
        return "Final answer: nowhere"

    [r] = await evaluate(PROBLEMS, task=TASK, modes=[Mode.VANILLA], agents=Agents.single(FunctionModel(flaky)))
    assert r.errors == 1


async def test_flex_mode_checks_the_library_can_be_written_before_any_call(tmp_path: Path) -> None:
    model = FunctionModel(dead)
    with Library.open(tmp_path / "lib.db") as lib:
        lib._conn.execute("PRAGMA query_only = ON")  # as a read-only or immutable file behaves
        with pytest.raises(LibraryError, match="cannot write to"):
            await evaluate(PROBLEMS, task=TASK, modes=[Mode.FLEX], agents=Agents.single(model), library=lib)
    assert model.calls == []
