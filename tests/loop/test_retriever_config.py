"""Flex mode, `solve` and the updater search the library through the retriever their config names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from flexlearn.errors import ConfigError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.loop.explore import ExploreConfig
from flexlearn.loop.learn import LearnConfig, learn
from flexlearn.loop.solve import solve
from flexlearn.models.function import FunctionModel
from flexlearn.retrieval import Bm25Retriever, Hit, registry
from flexlearn.tasks import Problem, get_task

TASK = get_task("exact")
PROBLEMS = [Problem(id=f"p{i}", question=f"Capital of country {i}?", answer=f"city{i}") for i in range(2)]


def reply(prompt, role, schema):  # type: ignore[no-untyped-def]
    if role == "distiller":
        lesson = {"zone": "golden", "level": "principle", "title": "capitals", "content": "Name the capital city."}
        return json.dumps({"experiences": [lesson]})
    if role == "updater":
        return json.dumps({"action": "add", "reason": "new"})
    if role == "critic":
        return json.dumps({"diagnosis": "wrong", "next_step": "again"})
    return "Final answer: city0"


class Recording(Bm25Retriever):
    """BM25, noting which of its methods were called."""

    calls: ClassVar[list[str]] = []

    def search(
        self, query: str, *, k: int = 10, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        self.calls.append("search")
        return super().search(query, k=k, zone=zone, level=level)

    def neighbours(
        self, exp: Experience, *, k: int = 5, zone: Zone | str | None = None, level: Level | str | None = None
    ) -> list[Hit]:
        self.calls.append("neighbours")
        return super().neighbours(exp, k=k, zone=zone, level=level)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(registry, "_FACTORIES", {**registry._FACTORIES, "recording": Recording})
    monkeypatch.setattr(Recording, "calls", [])
    return Recording.calls


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Library]:
    with Library.open(tmp_path / "lib.db") as lib:
        yield lib


async def test_learn_evaluate_and_solve_use_the_named_retriever(lib: Library, recording: list[str]) -> None:
    agents = Agents.single(FunctionModel(reply))
    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1), retriever="recording")
    await learn(PROBLEMS, task=TASK, agents=agents, library=lib, config=config)
    assert "neighbours" in recording  # the updater asked it for each candidate's neighbours

    recording.clear()
    [result] = await evaluate(
        PROBLEMS, task=TASK, modes=[Mode.FLEX], agents=agents, library=lib, config=EvalConfig(retriever="recording")
    )
    assert result.items[0].retrieved and set(recording) == {"search"}

    recording.clear()
    solution = await solve("Capital of country 0?", task=TASK, agents=agents, library=lib, retriever="recording")
    assert solution.guidance and set(recording) == {"search"}


async def test_an_unknown_retriever_fails_before_any_model_call(lib: Library) -> None:
    model = FunctionModel(reply)
    agents = Agents.single(model)
    with pytest.raises(ConfigError, match="unknown retriever 'nope'; choose from bm25"):
        await evaluate(
            PROBLEMS, task=TASK, modes=[Mode.FLEX], agents=agents, library=lib, config=EvalConfig(retriever="nope")
        )
    with pytest.raises(ConfigError, match="unknown retriever 'nope'"):
        await learn(PROBLEMS, task=TASK, agents=agents, library=lib, config=LearnConfig(retriever="nope"))
    assert model.calls == []
