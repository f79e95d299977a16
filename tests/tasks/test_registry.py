"""Finding tasks: built-ins, entry points, `module:Class`, and the errors for bad specs."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from flexlearn.errors import ConfigError
from flexlearn.tasks import Task, available_tasks, get_task, registry
from flexlearn.tasks.exact import ExactTask
from flexlearn.tasks.gsm8k import Gsm8kTask
from flexlearn.tasks.math import MathTask

USER_MODULE = '''
from flexlearn.tasks import Problem, Score, load_problems


class ReverseTask:
    """A user task: the answer is the question reversed."""

    name = "reverse"
    answer_format = "End with: Final answer: ANSWER"

    def load(self, path):
        return load_problems(path)

    def render(self, problem):
        return problem.question

    def extract_answer(self, reply):
        return reply.strip() or None

    def score(self, reply, problem):
        ok = self.extract_answer(reply) == problem.question[::-1]
        return Score(correct=ok, value=float(ok), extracted=self.extract_answer(reply))

    def format_answer(self, problem):
        return problem.question[::-1]


class NotATask:
    name = "half"

    def load(self, path):
        return []


class NeedsArguments(ReverseTask):
    def __init__(self, size):
        self.size = size


READY = ReverseTask()
'''


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package `flexuser_tasks` with module `flexuser_tasks.extra` on sys.path; removed afterwards."""
    package = tmp_path / "flexuser_tasks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "extra.py").write_text(textwrap.dedent(USER_MODULE))
    (package / "broken.py").write_text("import flexuser_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "flexuser_tasks"
    for name in [name for name in sys.modules if name.startswith("flexuser_tasks")]:
        del sys.modules[name]


def test_builtins() -> None:
    assert {"math", "gsm8k", "exact", "formula"} <= set(available_tasks())
    assert available_tasks() == sorted(available_tasks())
    assert isinstance(get_task("math"), MathTask)
    assert isinstance(get_task(" gsm8k "), Gsm8kTask)
    assert isinstance(get_task("exact"), ExactTask)
    assert isinstance(get_task("flexlearn.tasks.exact:ExactTask"), ExactTask)


def test_user_class_by_module_path(user_package: str, tmp_path: Path) -> None:
    task = get_task(f"{user_package}.extra:ReverseTask")
    assert isinstance(task, Task)
    assert task.name == "reverse"
    data = tmp_path / "words.jsonl"
    data.write_text('{"question": "abc", "answer": "cba"}\n')
    (item,) = task.load(data)
    assert task.score("cba", item).correct


def test_user_instance_is_used_as_is(user_package: str) -> None:
    first = get_task(f"{user_package}.extra:READY")
    assert first is get_task(f"{user_package}.extra:READY")


def test_entry_point_names(monkeypatch: pytest.MonkeyPatch, user_package: str) -> None:
    plugin = EntryPoint(name="reverse", value=f"{user_package}.extra:ReverseTask", group=registry.ENTRY_POINT_GROUP)
    shadow = EntryPoint(name="math", value=f"{user_package}.extra:NotATask", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [plugin, shadow] if group == plugin.group else [])
    assert available_tasks() == ["aime", "exact", "formula", "gsm8k", "math", "math500", "protein", "retro", "reverse"]
    assert get_task("reverse").name == "reverse"
    assert isinstance(get_task("math"), MathTask)  # a built-in is not replaced by a plugin of the same name


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("maths", ["unknown task 'maths'", "Did you mean 'math'?", "exact, formula, gsm8k, math", "module:Class"]),
        ("", ["unknown task ''"]),
        ("flexuser_tasks.nowhere:Task", ["cannot import module 'flexuser_tasks.nowhere'"]),
        ("flexuser_tasks.broken:Task", ["No module named 'flexuser_no_such_dependency'"]),
        ("flexuser_tasks.extra:Missing", ["has no attribute 'Missing'"]),
        ("flexuser_tasks.extra:", ["expected 'module:Class'"]),
        ("flexuser_tasks.extra:NotATask", ["is not a task", "'answer_format'", "'score' is missing"]),
        ("flexuser_tasks.extra:NeedsArguments", ["with no arguments failed", "size"]),
    ],
)
def test_bad_specs(user_package: str, spec: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        get_task(spec)
    for fragment in fragments:
        assert fragment in str(caught.value)
