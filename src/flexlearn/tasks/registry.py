"""Finding a task by name: built-ins, entry points (group `flexlearn.tasks`), or `module:Class`."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import cast

from flexlearn.errors import ConfigError
from flexlearn.tasks.base import Task

ENTRY_POINT_GROUP = "flexlearn.tasks"

# Also declared as entry points in pyproject.toml; listed here too so they work from a source tree that was
# never installed. Modules are imported only when asked for, so listing tasks stays cheap (math pulls in sympy).
_BUILTINS = {
    "math": "flexlearn.tasks.math:MathTask",
    "gsm8k": "flexlearn.tasks.gsm8k:Gsm8kTask",
    "exact": "flexlearn.tasks.exact:ExactTask",
    "formula": "flexlearn.tasks.formula:FormulaTask",
    "aime": "flexlearn.tasks.aime:AimeTask",
    "math500": "flexlearn.tasks.math500:Math500Task",
    "retro": "flexlearn.tasks.retro:RetroTask",
    "protein": "flexlearn.tasks.protein:ProteinTask",
}

_METHODS = ("load", "render", "extract_answer", "score", "format_answer")
_TEXT_ATTRIBUTES = ("name", "answer_format")


def available_tasks() -> list[str]:
    """The names `get_task` accepts besides `module:Class`: built-ins and installed entry points, sorted."""
    return sorted(_known())


def get_task(spec: str) -> Task:
    """The task named by `spec`: a built-in name, an entry-point name, or `package.module:Class`.

    A class is instantiated with no arguments; any other object found is used as it is (a ready-made task
    instance). Raises ConfigError for an unknown name, an import that fails, or an object that is not a Task.
    """
    spec = spec.strip()
    if ":" in spec:
        target = spec
    else:
        known = _known()
        if spec not in known:
            raise ConfigError(_unknown_message(spec, sorted(known)))
        target = known[spec]
    found = _import(target, spec)
    if isinstance(found, type):
        try:
            found = found()
        except ConfigError as exc:
            # Already written for the user (e.g. a missing optional dependency and how to install it).
            raise ConfigError(f"task {spec!r}: {exc}") from exc
        except Exception as exc:
            raise ConfigError(f"task {spec!r}: creating {target} with no arguments failed: {exc}") from exc
    problems = _protocol_problems(found)
    if problems:
        raise ConfigError(f"task {spec!r}: {target} is not a task: {'; '.join(problems)}")
    return cast(Task, found)


def _known() -> dict[str, str]:
    """name -> `module:attribute`; a built-in wins over an entry point of the same name."""
    known = {entry.name: entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}
    known.update(_BUILTINS)
    return known


def _import(target: str, spec: str) -> object:
    """The object `module:attr.path` names. Raises ConfigError saying what failed."""
    module_name, _, attribute_path = target.partition(":")
    module_name, attribute_path = module_name.strip(), attribute_path.strip()
    if not module_name or not attribute_path:
        raise ConfigError(f"task {spec!r}: expected 'module:Class', e.g. 'mypackage.tasks:MyTask'")
    try:
        found: object = importlib.import_module(module_name)
    except Exception as exc:  # a plugin's import can fail in any way; the user needs the reason, not a traceback
        raise ConfigError(f"task {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attribute_path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"task {spec!r}: module {module_name!r} has no attribute {attribute_path!r}") from None
    return found


def _protocol_problems(candidate: object) -> list[str]:
    """What `candidate` lacks to satisfy the Task protocol; empty when it is a task."""
    problems = [
        f"attribute {name!r} must be a non-empty string"
        for name in _TEXT_ATTRIBUTES
        if not isinstance(getattr(candidate, name, None), str) or not getattr(candidate, name)
    ]
    problems += [f"method {name!r} is missing" for name in _METHODS if not callable(getattr(candidate, name, None))]
    return problems


def _unknown_message(spec: str, names: list[str]) -> str:
    """An unknown-task message listing what exists, with a close match when there is one."""
    message = f"unknown task {spec!r}."
    close = difflib.get_close_matches(spec, names, n=1)
    if close:
        message += f" Did you mean {close[0]!r}?"
    return f"{message} Available: {', '.join(names)}; or give 'module:Class' for a task of your own."
