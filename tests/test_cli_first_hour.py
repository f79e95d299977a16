"""What a new user meets first: help that reads at 80 columns, exports by extension, a notice instead of a
surprise (solve without a library, an inferred task), `flex report` on any folder a command wrote, and no
third-party log lines."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from flexlearn.cli import app
from flexlearn.cli.common import resolve_task
from flexlearn.errors import ConfigError
from flexlearn.experience import Experience, Level, Provenance, Zone
from flexlearn.library.store import Library
from tests.report.runs import write_all
from tests.support.cli import flex, model_uri
from tests.support.fake_openai import FakeOpenAI

runner = CliRunner()


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "flex")
def test_help_reads_at_80_columns_with_an_example(path: tuple[str, ...]) -> None:
    text = _help(path)
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long
    assert "Examples:" in text and "  flex " in text.split("Examples:", 1)[1]
    assert "<bool>" not in text
    usage = text.splitlines()[0]
    assert "{" not in usage, usage


def test_an_option_name_means_one_thing_in_every_command() -> None:
    """Issue 27: --concurrency meant model calls in learn and problems elsewhere, --model was a free-text label in
    `library import`, and `library search` said --top where `library show` says --limit."""
    helps: dict[str, set[str]] = {}
    for _, command in COMMANDS:
        for param in getattr(command, "params", []):
            for name in getattr(param, "opts", []):
                helps.setdefault(name, set()).add(" ".join((getattr(param, "help", "") or "").split()))
    assert len(helps["--concurrency"]) == 1, helps["--concurrency"]
    assert all("model uri" in text.lower() for text in helps["--model"]), helps["--model"]
    assert "--top" not in helps and "--limit" in helps


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if not getattr(c, "commands", None)], ids=" ".join)
def test_help_shows_every_default(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    ctx = typer.main.get_command(app).make_context("flex", [*path, "--help"], resilient_parsing=True)
    for param in command.params:
        if param.param_type_name != "option" or param.required or param.is_flag or param.name == "help":
            continue
        record = param.get_help_record(ctx)
        assert record is not None and "default" in record[1].lower(), (path, param.name, record)
    text = _help(path)
    # One style: "Default: X." in words, never click's "[default: X]" beside it (or instead of it).
    assert "[default:" not in text and "default: " not in text.replace("Default: ", ""), text
    if any(p.envvar == "FLEX_MODEL" for p in command.params):
        assert "Default: local" in " ".join(text.split())


def _library(path: Path) -> Path:
    with Library.open(path) as lib:
        lib.add(
            Experience(Zone.GOLDEN, Level.CASE, "Plural of mouse", "mice", provenance=Provenance(task="exact")),
            reason="seeded",
        )
    return path


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_export_format_follows_the_extension_and_files_get_the_usual_mode(tmp_path: Path, umask_022: None) -> None:
    lib = _library(tmp_path / "lib.flexlib")
    as_json = tmp_path / "out.json"
    as_md = tmp_path / "out.md"
    assert runner.invoke(app, ["library", "export", str(lib), str(as_json)]).exit_code == 0
    assert runner.invoke(app, ["library", "export", str(lib), str(as_md)]).exit_code == 0
    assert as_json.read_text(encoding="utf-8").lstrip().startswith("{")
    assert as_md.read_text(encoding="utf-8").lstrip().startswith("#")
    for path in (as_json, as_md):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_export_refuses_an_extension_it_cannot_honour(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib.flexlib")
    result = runner.invoke(app, ["library", "export", str(lib), str(tmp_path / "out.txt")])
    assert result.exit_code == 2
    assert ".json" in result.output and ".md" in result.output
    assert not (tmp_path / "out.txt").exists()


def test_solve_without_a_library_says_so(scripted_server: FakeOpenAI) -> None:
    shown = flex("solve", "--task", "math", "--model", model_uri(scripted_server), "What is 2+2?")
    assert "no --library" in shown.stderr and "without guidance" in shown.stderr


def test_task_is_inferred_from_the_library_with_a_notice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = _library(tmp_path / "lib.flexlib")
    assert resolve_task(None, lib).name == "exact"
    assert "task: exact" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--task is required"):
        resolve_task(None, None)
    with pytest.raises(ConfigError, match="--task is required"):
        resolve_task(None, tmp_path / "missing.flexlib")


def test_report_finds_the_run_inside_a_demo_folder(tmp_path: Path) -> None:
    runs = asyncio.run(write_all(tmp_path / "fixtures"))
    demo_run = tmp_path / "flex-demo" / "run-20250101-120000"
    shutil.copytree(runs["full"], demo_run / "eval")
    (demo_run / "library.flexlib").write_bytes(b"")
    result = runner.invoke(app, ["report", str(demo_run)])
    assert result.exit_code == 0, result.output
    assert (demo_run / "report.html").is_file()
    # The folder holding the demo's runs works too: the newest run is reported, with a notice.
    result = runner.invoke(app, ["report", str(tmp_path / "flex-demo")])
    assert result.exit_code == 0, result.output
    assert "reporting on" in result.output and str(demo_run / "eval") in " ".join(result.output.split())


@pytest.mark.slow
def test_the_local_model_prints_no_third_party_log_line() -> None:
    pytest.importorskip("llama_cpp")
    shown = flex("solve", "--task", "exact", "--model", "local", "--max-tokens", "8", "Q: plural of mouse?")
    assert "no --library" in shown.stderr
    others = [line for line in shown.stderr.splitlines() if "no --library" not in line and line.strip()]
    assert not [line for line in others if "llama" in line or "ggml" in line or "http" in line], others


@pytest.fixture
def immutable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nothing can be written in, not even by root (`chattr +i`); skipped where the file system has no
    such flag."""
    import subprocess

    folder = tmp_path / "shared"
    folder.mkdir()
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


def test_read_commands_work_on_a_library_in_an_immutable_folder(
    immutable_folder: Path, tmp_path: Path, scripted_server: FakeOpenAI
) -> None:
    """Issue 27: in a read-only folder even `library stats` failed ("unable to open database file"). Commands
    that only read open the library read-only; eval and solve skip the usage counters they cannot write."""
    import subprocess

    path = immutable_folder / "lib.flexlib"
    with Library.open(path) as lib:
        lesson = Experience(Zone.GOLDEN, Level.PATTERN, "sum", "To find the sum of two numbers, add them.")
        lib.add(lesson, reason="test")
        lib.begin_run("learn-1", kind="learn", config={"task": "math"})
    if subprocess.run(["chattr", "+i", str(immutable_folder)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    before = sorted(p.name for p in immutable_folder.iterdir())
    assert flex("library", "stats", str(path)).stdout.count("1") >= 1
    assert "add them" in flex("library", "show", str(path)).stdout
    assert "add them" in flex("library", "search", str(path), "sum of two numbers").stdout
    assert "learn-1" in flex("library", "runs", str(path)).stdout
    out = tmp_path / "export.json"
    flex("library", "export", str(path), str(out))
    assert "add them" in out.read_text()
    test = tmp_path / "test.jsonl"
    test.write_text('{"question": "What is the sum of 23 and 41?", "answer": "64"}\n')
    model = ("--model", model_uri(scripted_server))
    evaluated = flex("eval", "--test", str(test), "--library", str(path), "--modes", "flex", *model)
    assert "flex" in evaluated.stdout
    solved = flex("solve", "What is the sum of 2 and 3?", "--library", str(path), "--show-guidance", *model)
    assert "add them" in solved.stdout
    refused = flex("library", "review", str(path), "--approve", "all", check=False)
    assert refused.returncode in (0, 2) and "Traceback" not in refused.stderr
    assert sorted(p.name for p in immutable_folder.iterdir()) == before
    with Library.open(path, read_only=True) as lib:
        assert lib.read_only and lib.count() == 1 and lib.get(lib.list()[0].id).retrieved == 0


def test_the_calls_table_has_a_row_for_every_role_of_the_run() -> None:
    from rich.console import Console

    from flexlearn.cli.output import meter_table
    from flexlearn.models.middleware import Meter

    meter = Meter()
    meter.record_call("actor", None, 0.5)
    console = Console(width=100, record=True)
    console.print(meter_table(meter, {"actor": "m", "critic": "m", "distiller": "m", "updater": "m"}))
    text = console.export_text()
    assert all(role in text for role in ("actor", "critic", "distiller", "updater"))
    assert "updater 0 calls: every candidate was decided without the model" in " ".join(text.split())
