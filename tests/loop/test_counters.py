"""helped/hurt count whenever an answer produced with retrieved experience is scored."""

from __future__ import annotations

import json
from pathlib import Path

import flexlearn
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import Mode, evaluate
from flexlearn.loop.explore import ExploreConfig
from flexlearn.loop.learn import LearnConfig, learn
from flexlearn.loop.solve import solve
from flexlearn.models.function import FunctionModel
from flexlearn.tasks import Problem, get_task

TASK = get_task("exact")
LESSON = "For a capital city question, answer with the city named in the question's own country."


def answers_right(prompt, role, schema):  # type: ignore[no-untyped-def]
    if role == "actor":
        question = prompt.messages[-1].content.split("Problem:")[-1]
        return "Final answer: Rome" if "Italy" in question else "Final answer: Lyon"
    if role == "distiller":
        return json.dumps({"experiences": []})
    return json.dumps({"action": "add", "reason": "new"})


def seeded(path: Path) -> tuple[Library, Experience]:
    lib = Library.open(path)
    lesson = lib.add(Experience(zone=Zone.GOLDEN, level=Level.PRINCIPLE, title="capital", content=LESSON), reason="t")
    return lib, lesson


PROBLEMS = [
    Problem(id="it", question="What is the capital city of Italy?", answer="Rome"),
    Problem(id="fr", question="What is the capital city of France?", answer="Paris"),
]


async def test_exploration_under_the_library_counts_each_rollouts_first_verdict_once(tmp_path: Path) -> None:
    lib, lesson = seeded(tmp_path / "l.flexlib")
    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1), explore_with_library=True, concurrency=1)
    agents = Agents.single(FunctionModel(answers_right))
    summary = await learn(PROBLEMS, task=TASK, agents=agents, library=lib, config=config)
    got = lib.get(lesson.id)
    assert (got.helped, got.hurt, got.retrieved) == (1, 1, 2)
    assert lib.trajectory(summary.run_id, "it")["guidance"] == [lesson.id]
    # The counts are written with each problem's done mark, in one transaction: a resumed run skips the
    # problems already done and so never counts them twice.
    assert set(lib.problem_status(summary.run_id).values()) == {"solved", "unsolved"}


async def test_flex_eval_solve_with_an_answer_and_record_count_outcomes(tmp_path: Path) -> None:
    lib, lesson = seeded(tmp_path / "l.flexlib")
    agents = Agents.single(FunctionModel(answers_right))
    await evaluate(PROBLEMS, task=TASK, modes=[Mode.FLEX], agents=agents, library=lib)
    assert (lib.get(lesson.id).helped, lib.get(lesson.id).hurt) == (1, 1)

    solution = await solve(PROBLEMS[0].question, task=TASK, agents=agents, library=lib, answer="Rome")
    assert solution.correct is True and lib.get(lesson.id).helped == 2
    await solve(PROBLEMS[0].question, task=TASK, agents=agents, library=lib)  # no answer: nothing to count
    assert (lib.get(lesson.id).helped, lib.get(lesson.id).hurt) == (2, 1)

    shown = flexlearn.guidance(lib, PROBLEMS[1].question)
    assert shown.ids == (lesson.id,) and LESSON in shown
    await flexlearn.arecord(lib, PROBLEMS[1].question, "Lyon", correct=False, agents=agents, guidance=shown)
    assert lib.get(lesson.id).hurt == 2
    lib.close()
