"""One set of settings: every field of `flexlearn.settings` is an option of the CLI verb and a keyword of the Python
function of the same name, with the same default, and neither side has a setting the other lacks."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import typer.main

import flexlearn
from flexlearn.cli.app import app
from flexlearn.errors import ConfigError
from flexlearn.settings import EvalSettings, LearnSettings, Settings, SolveSettings
from tests.support.cli import TEST, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI

# Parameters that are not settings of the step: what to run on (data, library, task, models), the run's identity,
# how to print, and callbacks. Each side lists its own; a new parameter must be a setting or be named here.
INPUTS_CLI = {
    "learn": {
        "train",
        "library",
        "task",
        "model",
        "critic_model",
        "distiller_model",
        "updater_model",
        "prompt_kind",
        "limit",
        "resume",
        "run",
        "resume_id",
        "timeout",
        "gate_check",
        "as_json",
    },
    "eval": {
        "test",
        "task",
        "library",
        "train",
        "model",
        "critic_model",
        "prompt_kind",
        "limit",
        "timeout",
        "snapshot",
        "out_dir",
        "as_json",
        "per_category",
    },
    "solve": {
        "question",
        "library",
        "task",
        "model",
        "prompt_kind",
        "show_guidance",
        "category",
        "answer",
        "timeout",
        "as_json",
    },
}
INPUTS_API = {
    "learn": {"problems", "task", "agents", "library", "resume", "source", "on_progress"},
    "eval": {"problems", "task", "agents", "library", "train", "on_item", "done"},
    "solve": {"question", "task", "agents", "library", "answer", "category"},
}
VERBS: dict[str, tuple[type[Settings], Any]] = {
    "learn": (LearnSettings, flexlearn.alearn),
    "eval": (EvalSettings, flexlearn.aevaluate),
    "solve": (SolveSettings, flexlearn.asolve),
}
BLOCKING = {"learn": flexlearn.learn, "eval": flexlearn.evaluate, "solve": flexlearn.solve}


def cli_params(verb: str) -> dict[str, Any]:
    command = typer.main.get_command(app).commands[verb]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params if p.name}


def api_params(fn: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn).parameters)


@pytest.mark.parametrize("verb", VERBS)
def test_every_setting_is_an_option_and_a_keyword_with_one_default(verb: str) -> None:
    settings, fn = VERBS[verb]
    fields = set(settings.model_fields)
    cli, api = cli_params(verb), api_params(fn)
    assert fields - set(cli) == set(), f"flex {verb} lacks options for these settings"
    assert fields - set(api) == set(), f"{fn.__name__} lacks keywords for these settings"
    assert set(cli) - fields - INPUTS_CLI[verb] == set(), f"flex {verb} has options that are not settings"
    assert set(api) - fields - INPUTS_API[verb] == set(), f"{fn.__name__} has keywords that are not settings"
    assert api_params(BLOCKING[verb]) == api  # the blocking form takes exactly the same keywords
    for name in fields:
        # A default is the settings' default once read by the settings (the CLI's "--tools" is a string).
        assert settings.of(**{name: cli[name].default}) == settings(), f"--{name} default differs"
        assert settings.of(**{name: api[name].default}) == settings(), f"{name}= default differs"
        option = cli[name]
        assert f"--{name.replace('_', '-')}" in option.opts, f"the option of {name} has another name"
        assert option.help == settings.model_fields[name].description  # its help is the field's description


def test_bad_settings_fail_in_the_api_as_in_the_cli() -> None:
    """A setting out of bounds was silently replaced by its default in the API (rollouts=0 read as 'unset')."""
    with pytest.raises(ConfigError, match="rollouts"):
        LearnSettings.of(rollouts=0)
    with pytest.raises(ConfigError, match="unknown tool"):
        EvalSettings.of(tools="python,shell")
    with pytest.raises(ConfigError, match="guide_at"):
        SolveSettings.of(guide_at="elsewhere")
    with pytest.raises(ConfigError, match="mode"):
        EvalSettings.of(modes=[])
    with pytest.raises(ConfigError, match="budget_tokens"):
        EvalSettings.of(budget_tokens=10)
    assert EvalSettings.of(modes="flex, vanilla").modes == (flexlearn.Mode.FLEX, flexlearn.Mode.VANILLA)


def test_default_modes_are_those_the_inputs_allow() -> None:
    default = EvalSettings()
    assert [m.value for m in default.mode_list(library=False, train=False)] == ["vanilla", "agent"]
    assert [m.value for m in default.mode_list(library=True, train=True)] == ["vanilla", "icl", "agent", "flex"]
    asked = EvalSettings.of(modes="flex")
    assert [m.value for m in asked.mode_list(library=True, train=True)] == ["flex"]


def test_an_eval_option_reaches_the_run_under_its_settings_name(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    """`flex eval` runs its settings through the public API and records each by name (the case gate, absent from
    the CLI before, included); without --train icl is left out rather than refused."""
    test = write_set(tmp_path / "test.jsonl", TEST)
    proc = flex(
        "eval", "--task", "math", "--test", str(test), "--model", model_uri(scripted_server),
        "--case-min-shared", "2", "--min-shared", "1", "--budget", "400", "--seed", "7", "--json",
    )  # fmt: skip
    config = json.loads(proc.stdout)["config"]
    assert config["modes"] == ["vanilla", "agent"]
    assert (config["case_min_shared"], config["min_shared"], config["budget_tokens"], config["seed"]) == (2, 1, 400, 7)
    # Read back, the record reproduces the run: a setting left to the model is recorded as it was resolved.
    assert EvalSettings.of(**{k: v for k, v in config.items() if k in EvalSettings.model_fields}) == EvalSettings.of(
        modes="vanilla,agent", case_min_shared=2, min_shared=1, budget_tokens=400, seed=7, agent_rounds=3
    )
