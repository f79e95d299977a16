"""An MCP server over one experience library, so that any MCP client (a desktop assistant, a coding agent) can
draw on what the library learned and, given a model, teach it from the client's own outcomes.

Tools: `search` (entries by BM25), `guidance` (the block flex mode would put in a prompt), `stats`, and `record`
when the server has a model and may write: it queues the outcome in the library file and returns at once, and an
`Absorber` running in the server's loop distils and absorbs the queue in the background, as `flexlearn.record`
does (outcomes left queued when the server stopped are absorbed when it next starts). With `review`, the lessons
learned from clients wait in quarantine. Each active entry is a resource, `experience://{id}`. Everything a client
reads goes through the retrievers and `Library.shown()`, so an entry waiting in quarantine is never served, by any
of these ways in.

Tools are coroutines: the SDK runs plain functions on worker threads, and the library's one SQLite connection
is best used from the event loop's thread alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from typing_extensions import TypedDict

import flexlearn
from flexlearn.engine import Engine
from flexlearn.errors import ConfigError, FlexError
from flexlearn.experience import Experience
from flexlearn.library.outcomes import Outcome
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.absorber import Absorber
from flexlearn.loop.agents import Agents
from flexlearn.retrieval import DEFAULT_RETRIEVER, get_retriever
from flexlearn.settings import EvalSettings
from flexlearn.tasks import Problem

TRANSPORTS = ("stdio", "http")
HTTP_PATH = "/mcp"


@dataclass(frozen=True)
class McpSettings:
    """How the server retrieves, what category recorded outcomes are filed under (None: no category), and whether
    the lessons learned from them wait in quarantine for review."""

    retriever: str = DEFAULT_RETRIEVER
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens
    task: str | None = None
    review: bool = False
    # The regression gate over each batch the absorber applies: check problems, scored by `task` (a task name).
    gate: tuple[Problem, ...] = ()


class Entry(TypedDict):
    """An experience as the tools return it: what a client needs to use it, without the library's bookkeeping."""

    id: str
    zone: str
    level: str
    title: str
    content: str
    examples: list[str]


class GuidanceResult(TypedDict):
    text: str
    ids: list[str]
    lessons: str


class RecordResult(TypedDict):
    id: str
    queued: bool


def make_absorber(library: Library, agents: Agents | None, settings: McpSettings) -> Absorber | None:
    """The background absorber of the record tool's queue: with `agents` (their distiller and updater write the
    lessons) over a library that can be written; None otherwise, and the server offers no record tool."""
    if agents is None or library.read_only:
        return None

    def report(message: str) -> None:
        print(f"flex mcp: {message}", file=sys.stderr, flush=True)

    async def gate_batch(before: int) -> None:
        engine = Engine.of(settings.task or "", agents, library, evaluation=EvalSettings.of(concurrency=1))
        verdict = await engine.gate(before, list(settings.gate), what="outcomes absorbed by flex mcp")
        report(verdict.line())

    return Absorber(
        library, agents, review=settings.review, on_error=report, after_pass=gate_batch if settings.gate else None
    )


def build_server(library: Library, settings: McpSettings, absorber: Absorber | None = None) -> MCPServer:
    """The MCP server over an open `library`. `record` is offered only with an `absorber` (`make_absorber`); the
    server's instructions say when it is not."""
    server = MCPServer(
        "flexlearn",
        version=flexlearn.__version__,
        instructions=_instructions(absorber is not None),
        log_level="WARNING",
    )
    _add_reading_tools(server, library, settings)
    if absorber is not None:
        _add_record_tool(server, library, absorber, settings)
    _add_entry_resource(server, library)
    return server


def _instructions(can_record: bool) -> str:
    text = (
        "An experience library: lessons learned from earlier attempts at problems (golden: what worked; warning: "
        "what failed and why), from general principles to worked cases. Before solving a problem, call guidance "
        "with it and put the returned text in your context; search finds entries by keywords, and each entry can "
        "be read as the resource experience://{id}."
    )
    if can_record:
        return text + (
            " After an attempt, call record with the outcome (and the ids guidance returned), so the library "
            "learns from it: record returns at once, and the lesson is learned in the background."
        )
    return text + " This server does not record outcomes (it is read-only, or was started without --model)."


def _add_reading_tools(server: MCPServer, library: Library, settings: McpSettings) -> None:
    retriever = get_retriever(settings.retriever, library)
    reading = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def search(
        query: Annotated[str, Field(description="What to look for, in plain words.")],
        k: Annotated[int, Field(ge=1, le=50, description="How many entries at most.")] = 5,
        zone: Annotated[
            Literal["golden", "warning"] | None,
            Field(description="golden (what worked) or warning (what failed); default: both."),
        ] = None,
        level: Annotated[
            Literal["principle", "pattern", "case"] | None,
            Field(description="principle, pattern or case (general to concrete); default: all."),
        ] = None,
    ) -> list[Entry]:
        """Search the experience library for entries matching a query, best first."""
        with _as_tool_error():
            return [_entry(hit.experience) for hit in retriever.search(query, k=k, zone=zone, level=level)]

    async def guidance(
        question: Annotated[str, Field(description="The problem about to be solved.")],
        category: Annotated[str, Field(description="The kind of problem; its worked cases are preferred.")] = "",
        guide_at: Annotated[
            Literal["prompt", "review"],
            Field(
                description="prompt: everything in text, for the solver's context. review: text holds the worked "
                "cases, lessons a checklist for a reviewer of the attempt."
            ),
        ] = "prompt",
        budget_tokens: Annotated[
            int, Field(ge=0, description="Most tokens of experience to return.")
        ] = settings.budget_tokens,
    ) -> GuidanceResult:
        """The experience relevant to a question, rendered to put in a prompt, as flexlearn's own agent sees it
        (empty when nothing relevant is stored). Where the server offers record, hand it the ids with the outcome."""
        with _as_tool_error():
            found = flexlearn.guidance(
                library,
                question,
                budget_tokens=budget_tokens,
                retriever=settings.retriever,
                category=category,
                guide_at=guide_at,
            )
        return {"text": str(found), "ids": list(found.ids), "lessons": found.lessons}

    async def stats() -> dict[str, Any]:
        """Counts of the library's entries by zone and level, of the updater's decisions, and of the recorded
        outcomes by status (queued: waiting to be learned from; absorbed; failed)."""
        queue = library.queue_stats(errors=0)
        return {**library.stats(), "queue": {k: queue[k] for k in ("queued", "absorbed", "failed")}}

    server.add_tool(search, annotations=reading)
    # Not read-only: each call counts as a retrieval of the entries it returns.
    server.add_tool(guidance, annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False))
    server.add_tool(stats, annotations=reading)


def _add_record_tool(server: MCPServer, library: Library, absorber: Absorber, settings: McpSettings) -> None:
    async def record(
        question: Annotated[str, Field(description="The problem that was attempted.")],
        attempt: Annotated[str, Field(description="The attempt: the reply or work, as given.")],
        correct: Annotated[bool, Field(description="Whether the attempt was right.")],
        answer: Annotated[str | None, Field(description="The reference answer, when known.")] = None,
        feedback: Annotated[
            str | None, Field(description="What went right or wrong: a user's correction, a test's output.")
        ] = None,
        guidance_ids: Annotated[
            list[str] | None,
            Field(description="The ids guidance returned for this question: they count as having helped or hurt."),
        ] = None,
    ) -> RecordResult:
        """Teach the library from one outcome. Returns at once with the outcome's id: it is kept in the library and
        learned from in the background (distilled into lessons, which are added to the library or merged into
        entries it holds); stats counts the outcomes still queued."""
        outcome = Outcome.of(
            question,
            attempt,
            correct=correct,
            answer=answer,
            feedback=feedback,
            category=settings.task or "",
            guidance=guidance_ids or (),
        )
        with _as_tool_error():
            id = library.enqueue_outcome(outcome)
        absorber.wake()
        return {"id": id, "queued": True}

    server.add_tool(record, annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))


def _add_entry_resource(server: MCPServer, library: Library) -> None:
    @server.resource(
        "experience://{id}",
        name="experience",
        description="One active entry of the library, with its provenance and usage counts.",
        mime_type="application/json",
    )
    async def experience(id: str) -> str:
        found = library.shown().find(id)
        if found is None:
            raise ResourceNotFoundError(f"no active experience with id {id!r}")
        return json.dumps(found.to_dict(), ensure_ascii=False, indent=2)


def _entry(exp: Experience) -> Entry:
    return {
        "id": exp.id,
        "zone": str(exp.zone),
        "level": str(exp.level),
        "title": exp.title,
        "content": exp.content,
        "examples": list(exp.examples),
    }


@contextmanager
def _as_tool_error() -> Iterator[None]:
    """flexlearn's own errors, whose messages say what to change, as tool errors the client's model reads;
    anything else stays a crash, which the SDK reports without details."""
    try:
        yield
    except FlexError as exc:
        raise ToolError(str(exc)) from exc


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(transport: str, host: str, token: str | None) -> None:
    """ConfigError for a transport that is not one, and for HTTP on an address other machines can reach
    without a token: anyone who can connect could then read the library and write to it."""
    if transport not in TRANSPORTS:
        raise ConfigError(f"unknown transport {transport!r}; choose from {', '.join(TRANSPORTS)}")
    if transport == "http" and not token and not is_loopback(host):
        raise ConfigError(
            f"--host {host} is not a loopback address: give a --token (or FLEX_MCP_TOKEN) that every request must carry"
        )


class RequireToken:
    """ASGI middleware: an HTTP request without `Authorization: Bearer <token>` gets 401 and reaches nothing."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            refusal = PlainTextResponse(
                "missing or wrong bearer token", status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", [])
        value = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        scheme, _, given = value.partition(b" ")
        # compare_digest: the time taken says nothing about how much of the token was right.
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)


def serve(
    library: Library,
    agents: Agents | None,
    settings: McpSettings,
    *,
    transport: str = "stdio",
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `library` over MCP until the client goes away (stdio) or the process is stopped, then close the
    agents' models; the library stays the caller's to close. Blocks, running its own event loop, in which the
    record tool's absorber runs while the server serves. `on_ready` is told where the server is (its URL, or
    "stdio") once the address is held: a port in use fails before it."""
    check_transport(transport, host, token)
    absorber = make_absorber(library, agents, settings)
    server = build_server(library, settings, absorber)
    sock = _listen(host, port) if transport == "http" else None
    if on_ready is not None:
        bracketed = f"[{host.strip('[]')}]" if ":" in host else host
        on_ready(f"http://{bracketed}:{port}{HTTP_PATH}" if sock is not None else "stdio")
    asyncio.run(_run(server, agents, absorber, sock, host, token))


async def _run(
    server: MCPServer,
    agents: Agents | None,
    absorber: Absorber | None,
    sock: socket.socket | None,
    host: str,
    token: str | None,
) -> None:
    # Outcomes queued while the server was down are absorbed from the start; what is under way when it stops stays
    # queued, with nothing of it applied, for the next start.
    background = asyncio.create_task(absorber.run()) if absorber is not None else None
    try:
        if sock is None:
            await server.run_stdio_async()
        else:
            app: ASGIApp = server.streamable_http_app(streamable_http_path=HTTP_PATH, host=host)
            # A client's open event stream would hold a graceful shutdown forever: it gets a few seconds.
            config = uvicorn.Config(
                RequireToken(app, token) if token else app, log_level="warning", timeout_graceful_shutdown=3
            )
            await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        if background is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        if agents is not None:
            await agents.aclose()


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound here so that a port in use is one clear error, not a server log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
