"""Shared CLI plumbing: building models from options, running coroutines, turning errors into messages."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from flexlearn.cli.output import err
from flexlearn.errors import FlexError
from flexlearn.loop.agents import Agents
from flexlearn.models.base import PromptKind
from flexlearn.models.middleware import Meter, RetryPolicy, build_stack
from flexlearn.models.uri import from_uri
from flexlearn.tasks import Problem, Task

T = TypeVar("T")

MODEL_HELP = (
    "Model URI: openai:MODEL@BASE_URL (any OpenAI-compatible server; key from FLEX_API_KEY or OPENAI_API_KEY), "
    "openai:MODEL (api.openai.com), anthropic:MODEL (key from ANTHROPIC_API_KEY), local (the embedded Gemma 3 270M) "
    "or local:/path/model.gguf."
)


ModelOpt = Annotated[str | None, typer.Option("--model", "-m", envvar="FLEX_MODEL", help=MODEL_HELP)]
KindOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt-kind", envvar="FLEX_PROMPT_KIND", help="chat or completion (base models); default per backend."
    ),
]
TaskOpt = Annotated[
    str,
    typer.Option(
        "--task",
        "-t",
        help="Task: math, gsm8k, exact, aime, math500, retro, protein, an entry-point name, or module:Class.",
    ),
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds before one model call times out.")]
TempOpt = Annotated[
    float | None, typer.Option("--temperature", help="Actor sampling temperature (default: the model's).")
]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-tokens", min=1, help="Cap on each actor reply (default: the backend's; base models in chat mode ramble)."
    ),
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """A FlexError becomes a one-line message and exit code 2; Ctrl-C says how to pick up again."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except FlexError as exc:
            err.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]: work committed so far is kept", highlight=False)
            sys.exit(130)

    return wrapper


def build_agents(
    model_uri: str | None, *, prompt_kind: str | None, concurrency: int, timeout: float, meter: Meter
) -> Agents:
    kind = PromptKind(prompt_kind) if prompt_kind else None
    model = from_uri(model_uri, prompt_kind=kind, timeout=timeout)
    stacked = build_stack(model, max_concurrency=max(1, concurrency), retry=RetryPolicy(), meter=meter)
    return Agents.single(stacked, meter)


def load_limited(task: Task, path: Path, limit: int | None) -> list[Problem]:
    """The task's problems from `path`, only the first `limit` when given (`--limit`)."""
    problems = task.load(path)
    return problems[:limit] if limit else problems
