"""`flex mcp`: one experience library served to MCP clients (desktop assistants, coding agents), over stdio or
streamable HTTP. The server itself is `flexlearn.mcp_server`; this command checks the options, opens the library
and the model, and reports where it serves.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from flexlearn import Agents, Library
from flexlearn.cli.common import (
    Command,
    RetrieverOpt,
    build_agents,
    examples,
    handle_errors,
    library_option,
    library_task,
)
from flexlearn.cli.gating import GateOpt, load_check
from flexlearn.cli.output import err
from flexlearn.errors import ConfigError
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.models.middleware import Meter
from flexlearn.retrieval import DEFAULT_RETRIEVER
from flexlearn.retrieval.registry import check_retriever
from flexlearn.tasks import get_task

MCP_HINT = "pip install 'flexlearn[mcp]'"


def register(app: typer.Typer) -> None:
    app.command(
        "mcp",
        cls=Command,
        epilog=examples(
            "flex mcp --library gsm8k.flexlib --read-only",
            "flex mcp --library gsm8k.flexlib --model openai:gpt-4o-mini",
            "flex mcp --library shared.flexlib --model openai:gpt-4o-mini --review",
            "flex mcp -l gsm8k.flexlib -m openai:gpt-4o-mini --gate check.jsonl",
            "export FLEX_MCP_TOKEN=$(openssl rand -hex 16)",
            "flex mcp --library gsm8k.flexlib --transport http --port 8765",
        ),
    )(handle_errors(mcp_cmd, resume_hint="start the server again"))


def mcp_cmd(
    library: Annotated[
        str,
        library_option(
            "Experience library to serve: a file (created if missing when --model lets record add to it) or a "
            "postgresql://... URL."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model URI that distils and files what the record tool is told, in the background (see flex "
            "learn --help for the forms). Default: none, and no record tool.",
        ),
    ] = None,
    transport: Annotated[
        str, typer.Option("--transport", help="stdio (the client starts the server) or http (streamable HTTP).")
    ] = "stdio",
    host: Annotated[
        str, typer.Option("--host", help="With http: the address to listen on. Any but a loopback needs a --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="With http: the port to listen on.", min=1, max=65535)] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FLEX_MCP_TOKEN",
            help="With http: every request must carry 'Authorization: Bearer TOKEN'. Default: none, allowed on a "
            "loopback --host only.",
            show_default=False,
        ),
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only", help="Open the library without writing anything: no record tool, no usage counters."
        ),
    ] = False,
    review: Annotated[
        bool,
        typer.Option(
            "--review",
            help="Lessons learned from the clients' outcomes wait in quarantine, never shown to a model, until "
            "approved with flex library review; none is merged into a served entry. Default: off, served at once.",
        ),
    ] = False,
    gate_check: GateOpt = None,
    budget: Annotated[
        int, typer.Option("--budget", min=50, help="The guidance tool's default token budget.")
    ] = DEFAULT_LIMITS.retrieval_budget_tokens,
    retriever: RetrieverOpt = DEFAULT_RETRIEVER,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            "-t",
            help="The category recorded outcomes are filed under: a task name or any label. Default: the task "
            "the --library was learned on, else none.",
        ),
    ] = None,
) -> None:
    """Serve an experience library over MCP: search, guidance, stats and record tools, and each entry as a
    resource."""
    if importlib.util.find_spec("mcp") is None:
        raise ConfigError(f"flex mcp needs the MCP Python SDK. Run: {MCP_HINT}")
    from flexlearn.mcp_server import McpSettings, check_transport, serve

    token = token or None
    check_transport(transport, host, token)
    check_retriever(retriever)
    if read_only and model:
        raise ConfigError("--model is for the record tool, which --read-only leaves out: drop one of them")
    if review and not model:
        raise ConfigError("--review is for what the record tool learns, which needs a --model")
    if gate_check is not None and (not model or review):
        raise ConfigError(
            "--gate checks what the record tool teaches before it is served: it needs --model, not --review"
        )
    if gate_check is not None and task is None:
        task = library_task(library)
    if gate_check is not None and task is None:
        raise ConfigError("--gate needs --task, the task that scores its check problems")
    check = load_check(get_task(task or ""), gate_check) if gate_check is not None else []
    agents = _agents(model)
    if agents is not None and task is None:
        task = library_task(library)
    settings = McpSettings(retriever=retriever, budget_tokens=budget, task=task, review=review, gate=tuple(check))
    with _open(library, read_only=read_only, writes=agents is not None) as lib:
        queued = lib.queue_stats(errors=0)["queued"] if agents is not None else 0
        tools = "search, guidance, stats" + (", record" if agents is not None else "")
        tools += " (lessons wait for review)" if review else ""
        tools += f"; {queued} outcomes queued from before, absorbing them" if queued else ""
        guard = " (bearer token required)" if transport == "http" and token else ""

        def announce(where: str) -> None:
            err.print(f"flex mcp: serving {lib.location} at {where}{guard}; tools: {tools}", highlight=False)

        serve(lib, agents, settings, transport=transport, host=host, port=port, token=token, on_ready=announce)


def _agents(model: str | None) -> Agents | None:
    """The record tool's models, or None without --model. Only the distiller and the updater are called."""
    if model is None:
        return None
    return build_agents(model, prompt_kind=None, concurrency=1, timeout=120.0, meter=Meter())


def _open(path: str, *, read_only: bool, writes: bool) -> Library:
    """The library as the server uses it: read-only when asked; writable, and created if missing, when record
    may add to it; otherwise writable where it can be (guidance's usage counters), read-only where not."""
    if read_only:
        return Library.open(path, read_only=True)
    if writes:
        lib = Library.open(path)
        try:
            lib.check_writable()
        except BaseException:
            lib.close()
            raise
        return lib
    return Library.open_for_reading(path)
