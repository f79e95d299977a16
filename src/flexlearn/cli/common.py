"""Shared CLI plumbing: building models from options, running coroutines, turning errors into messages."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from flexlearn._api import connect
from flexlearn.cli.output import err
from flexlearn.errors import FlexError
from flexlearn.loop.agents import Agents
from flexlearn.models.base import ChatModel
from flexlearn.models.middleware import Meter
from flexlearn.tasks import Problem, Task

T = TypeVar("T")

MODEL_HELP = (
    "Model URI: openai:MODEL@BASE_URL (any OpenAI-compatible server; key from FLEX_API_KEY or OPENAI_API_KEY), "
    "openai:MODEL (api.openai.com), anthropic:MODEL (key from ANTHROPIC_API_KEY), local (the embedded Gemma 3 270M) "
    "or local:/path/model.gguf."
)


ModelOpt = Annotated[str | None, typer.Option("--model", "-m", envvar="FLEX_MODEL", help=MODEL_HELP)]
CriticModelOpt = Annotated[
    str | None,
    typer.Option(
        "--critic-model",
        envvar="FLEX_CRITIC_MODEL",
        help="Model URI for the critic (feedback while exploring; the blind judge in agent mode). Default: --model.",
    ),
]
DistillerModelOpt = Annotated[
    str | None,
    typer.Option(
        "--distiller-model",
        envvar="FLEX_DISTILLER_MODEL",
        help="Model URI for the distiller, which writes experiences from trajectories. Default: --model.",
    ),
]
UpdaterModelOpt = Annotated[
    str | None,
    typer.Option(
        "--updater-model",
        envvar="FLEX_UPDATER_MODEL",
        help="Model URI for the updater, which adds, merges or discards each experience. Default: --model.",
    ),
]
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


def run_closing(agents: Agents, coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to the end, then close the agents' models whatever happened."""

    async def go() -> T:
        try:
            return await coro
        finally:
            await agents.aclose()

    return asyncio.run(go())


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


def load_limited(task: Task, path: Path, limit: int | None) -> list[Problem]:
    """The task's problems from `path`, only the first `limit` when given (`--limit`)."""
    problems = task.load(path)
    return problems[:limit] if limit else problems
