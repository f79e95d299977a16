"""Shared CLI plumbing: building models from options, running coroutines, turning errors into messages."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import annotated_types
import typer
from pydantic import BaseModel
from rich.markup import escape
from typer.core import TyperCommand

from flexlearn import Agents, Library, connect
from flexlearn.cli.output import err
from flexlearn.errors import ConfigError, FlexError
from flexlearn.library import backend
from flexlearn.library.backend import ServerLost, is_url, location_of
from flexlearn.models.base import ChatModel
from flexlearn.models.middleware import Meter
from flexlearn.settings import EvalSettings
from flexlearn.tasks import Problem, Task, available_tasks, get_task

T = TypeVar("T")

MODEL_HELP = (
    "Model URI: local (embedded Gemma 3 270M), local:qwen2.5-coder-1.5b, local:PATH.gguf, "
    "openai:MODEL[@BASE_URL], anthropic:MODEL (keys and servers: README, 'Using it with a real model')."
)

# Help is click's plain layout (rich_markup_mode=None on every Typer): at 80 columns rich's option table leaves
# the descriptions a column of about 17 characters.
HELP_MARKUP = None


_EXTRA = re.compile(r"\s*\[([^\[\]]*)\]\s*$")


def prose_default(help_text: str) -> str:
    """One way of stating a default in every help text: click's bracketed "[default: X]" becomes the sentence
    "Default: X." (dropped where the text already says its default in words); the other bracketed notes (env
    var, range, required) stay in brackets."""
    match = _EXTRA.search(help_text)
    if match is None:
        return help_text
    notes = [part.strip() for part in match.group(1).split(";")]
    defaults = [n for n in notes if n.startswith("default:")]
    rest = [n for n in notes if not n.startswith("default:")]
    text = help_text[: match.start()].rstrip()
    if defaults and "default:" not in text.lower():
        value = defaults[0].removeprefix("default:").strip()
        text = f"{text} Default: {value}." if text else f"Default: {value}."
    return f"{text}  [{'; '.join(rest)}]" if rest else text


class Command(TyperCommand):
    """A command whose usage line names required arguments plainly (`flex solve [OPTIONS] QUESTION`), as click
    does, rather than typer's `{QUESTION}`, and whose options state their defaults one way (`prose_default`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [
            piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
            for piece in super().collect_usage_pieces(ctx)
        ]

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if not getattr(param, "_prose_default", False):
                param.get_help_record = _with_prose_default(param.get_help_record)
                param._prose_default = True
        return params


def _with_prose_default(record: Callable[[Any], tuple[str, str] | None]) -> Callable[[Any], tuple[str, str] | None]:
    def wrapped(ctx: Any) -> tuple[str, str] | None:
        found = record(ctx)
        return None if found is None else (found[0], prose_default(found[1]))

    return wrapped


def examples(*lines: str) -> str:
    """A help epilog with example command lines, printed as written (click's \\b keeps it from being rewrapped)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


ModelOpt = Annotated[str, typer.Option("--model", "-m", envvar="FLEX_MODEL", help=MODEL_HELP)]
CriticModelOpt = Annotated[
    str | None,
    typer.Option(
        "--critic-model",
        envvar="FLEX_CRITIC_MODEL",
        help="Model URI for the critic (feedback while exploring; the blind judge in agent mode). "
        "Default: the --model.",
    ),
]
DistillerModelOpt = Annotated[
    str | None,
    typer.Option(
        "--distiller-model",
        envvar="FLEX_DISTILLER_MODEL",
        help="Model URI for the distiller, which writes experiences from trajectories. Default: the --model.",
    ),
]
UpdaterModelOpt = Annotated[
    str | None,
    typer.Option(
        "--updater-model",
        envvar="FLEX_UPDATER_MODEL",
        help="Model URI for the updater, which adds, merges or discards each experience. Default: the --model.",
    ),
]
KindOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt-kind",
        envvar="FLEX_PROMPT_KIND",
        help="chat, or completion for base models. Default: completion for local models, chat otherwise.",
    ),
]
TaskOpt = Annotated[
    str | None,
    typer.Option(
        "--task",
        "-t",
        help="Task: math, gsm8k, exact, formula, aime, math500, retro, protein, an entry-point name, or "
        "module:Class. Default: the task the --library was learned on (a notice says which); required when there "
        "is none.",
    ),
]


def setting(settings: type[BaseModel], name: str, *decls: str, **kwargs: Any) -> Any:
    """The option of a settings field (`flexlearn.settings`): ``--NAME`` (and any other `decls`), with the field's
    description as its help and its bounds as the option's, so the CLI and the Python API cannot drift apart."""
    field = settings.model_fields[name]
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            kwargs.setdefault("min", rule.ge)
    return typer.Option(f"--{name.replace('_', '-')}", *decls, help=field.description, **kwargs)


def library_argument() -> Any:
    """The LIBRARY argument of the `flex library` commands. A string, not a Path: a PostgreSQL URL's `//` must reach
    Library.open as written (a Path makes it `postgresql:/`)."""
    return typer.Argument(
        metavar="LIBRARY", help="Experience library: a file, or a postgresql://... URL.", callback=_library_given
    )


def library_option(help_text: str, *decls: str) -> Any:
    """The `--library` option of learn, eval, solve, mcp, scaling and inherit (or another name in `decls`): a file
    or a `postgresql://` URL, as a string for the reason `library_argument` gives."""
    return typer.Option(*(decls or ("--library", "-l")), metavar="LIBRARY", help=help_text, callback=_library_given)


def _library_given(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise typer.BadParameter("empty: give a library file or a postgresql://... URL")
    return value


TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds before one model call times out.")]
# One meaning in every command: how many calls each model has in flight at once.
ConcurrencyOpt = Annotated[int, setting(EvalSettings, "concurrency")]
TempOpt = Annotated[float | None, setting(EvalSettings, "temperature")]
MaxTokensOpt = Annotated[int | None, setting(EvalSettings, "max_tokens")]
RetrieverOpt = Annotated[str, setting(EvalSettings, "retriever")]
GuideAtOpt = Annotated[str | None, setting(EvalSettings, "guide_at", show_default=False)]
SnapshotOpt = Annotated[
    bool,
    typer.Option(
        "--snapshot",
        help="Copy the whole library into the run folder (library.json). Default: off; the folder refers to the "
        "library instead (library.ref.json: its path, content hash and stats, and the entries the run retrieved, "
        "enough for the report).",
    ),
]
ToolsOpt = Annotated[str | None, setting(EvalSettings, "tools")]


def run_closing(agents: Agents, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to the end, then close the agents' models whatever happened."""

    async def go() -> T:
        try:
            return await coro
        finally:
            await agents.aclose()

    return asyncio.run(go())


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a CI timeout, a container stopping), raised where the program is, so that it unwinds
    exactly like Ctrl-C: open transactions roll back, models close, and the user is told how to continue."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    # Only the main thread may set handlers (the CLI runs there; a test runner's worker thread may not).
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def database_failure(exc: sqlite3.DatabaseError, resume_hint: str) -> str:
    """One line for a library file that failed under a command: damaged pages, or a file that failed while in use
    (its -wal or -shm removed, the disk full or failing), whose committed work is in the file."""
    if "malformed" in str(exc) or "not a database" in str(exc):
        return f"the library file is damaged ({exc}); restore it from a copy or an export"
    return (
        f"the library file failed while in use ({exc}; was its -wal or -shm file removed, or is the disk full?); "
        f"work committed before it is kept; to continue, {resume_hint}"
    )


def handle_errors(
    fn: Callable[..., T] | None = None, *, resume_hint: str = "run the same command again"
) -> Callable[..., T] | Callable[[Callable[..., T]], Callable[..., T]]:
    """A FlexError becomes a one-line message and exit code 2; Ctrl-C (exit 130) and SIGTERM (exit 143) say
    what was kept and how to pick up again (`resume_hint`). Use as `@handle_errors` or
    `@handle_errors(resume_hint=...)`."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                with _sigterm_as_interrupt():
                    return fn(*args, **kwargs)
            except FlexError as exc:
                line = str(exc)
                if isinstance(exc, ServerLost):
                    line += f"; work committed before it is kept; to continue, {resume_hint}"
                # One line whatever its length: the terminal wraps it, a log or a pipe keeps it whole.
                err.print(f"[bold red]error:[/bold red] {escape(line)}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except sqlite3.DatabaseError as exc:
                line = database_failure(exc, resume_hint)
                err.print(f"[bold red]error:[/bold red] {escape(line)}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except Exception as exc:
                line = server_failure(exc)
                if line is None:
                    raise
                err.print(f"[bold red]error:[/bold red] {escape(line)}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt as exc:
                what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
                err.print(
                    f"[yellow]{what}[/yellow]: work committed so far is kept; to continue, {escape(resume_hint)}",
                    highlight=False,
                )
                sys.exit(128 + signal.SIGTERM if isinstance(exc, Terminated) else 130)

        return wrapper

    return decorate if fn is None else decorate(fn)


def server_failure(exc: BaseException) -> str | None:
    """One line for an error of a library's PostgreSQL server that reached the command unwrapped (the library
    turns those it sees into a LibraryError naming it), or None when `exc` is not psycopg's."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    from flexlearn.library.backend.postgres import failure

    return failure(exc, "the library", opening=False)


def check_out_dir(path: Path | None) -> None:
    """ConfigError now, not after the whole run, when `--out` cannot be a folder we write in: it is a file, a
    part of its path is a file, or the folder it would be made in is not writable."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; give a folder (created if missing)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {path}: {existing} is a file, so the folder cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path}: cannot write in {existing} (permission denied)")


def build_agents(
    model_uri: str | None,
    *,
    critic: str | None = None,
    distiller: str | None = None,
    updater: str | None = None,
    prompt_kind: str | None,
    concurrency: int,
    timeout: float,
    meter: Meter,
) -> Agents:
    """The actor's model from `model_uri` (None: the embedded model), and each other role's from its own URI,
    defaulting to the actor's. Roles with the same URI share one model: one client, one concurrency limit, one
    loaded local model. Every call is metered in `meter` under its role."""
    built: dict[str, ChatModel] = {}

    def model(uri: str | None) -> ChatModel:
        key = (uri or "local").strip()
        if key not in built:
            built[key] = connect(key, concurrency=concurrency, meter=meter, prompt_kind=prompt_kind, timeout=timeout)
        return built[key]

    actor = model(model_uri)
    return Agents(
        actor,
        critic=model(critic) if critic else actor,
        distiller=model(distiller) if distiller else actor,
        updater=model(updater) if updater else actor,
        meter=meter,
    )


def open_library_for_reading(library: str | Path | None) -> Library | None:
    """The --library of a command that reads it (eval, solve): a file or a `postgresql://` URL, read-only where it
    cannot be written, with a notice that its usage counters are then left as they are."""
    if library is None:
        return None
    lib = Library.open_for_reading(library)
    if lib.read_only:
        err.print(
            f"notice: {lib.location} cannot be written here: read-only, its usage counters are left as they are",
            highlight=False,
            markup=False,
        )
    return lib


def resolve_task(task: str | None, library: str | Path | None) -> Task:
    """The task named by --task; without one, the task `library` (a file or a URL) was learned on, with a notice on
    stderr. Raises ConfigError when there is neither, rather than guess: scoring with the wrong task looks like a
    bad model."""
    if task:
        return get_task(task)
    inferred = library_task(library) if library is not None else None
    if inferred is None:
        where = f": {location_of(library)} records no task to infer it from" if library is not None else ""
        raise ConfigError(f"--task is required{where} (one of {', '.join(available_tasks())}, or module:Class)")
    assert library is not None
    err.print(
        f"task: {inferred} (the task {location_of(library)} was learned on; --task chooses another)",
        highlight=False,
        markup=False,
    )
    return get_task(inferred)


def library_task(path: str | Path) -> str | None:
    """The task a library's latest learn run used, else the one task all its experiences name; None when it has
    neither, or there is no library yet (no such file; an empty database, which a learn run makes a library)."""
    if not is_url(path) and not Path(path).is_file():
        return None
    if is_url(path) and _empty_database(str(path)):
        return None
    with Library.open_for_reading(path) as lib:
        run_id = lib.latest_run("learn")
        task = (lib.run_config(run_id) or {}).get("task") if run_id else None
        if task:
            return str(task)
        tasks = {e.provenance.task for e in lib.list()} - {None, ""}
    return tasks.pop() if len(tasks) == 1 else None


def _empty_database(url: str) -> bool:
    """Whether the database `url` names holds nothing yet (LibraryError, one line, when it cannot be opened)."""
    db = backend.connect(url, create=False, read_only=True)
    try:
        return db.stored_version() == 0
    finally:
        db.close()


def load_limited(task: Task, path: Path, limit: int | None) -> list[Problem]:
    """The task's problems from `path`, only the first `limit` when given (`--limit`)."""
    problems = task.load(path)
    return problems[:limit] if limit else problems
