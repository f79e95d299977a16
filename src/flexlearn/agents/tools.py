"""The actor's tools: a sandboxed Python interpreter and a search of the experience library.

Both are reached the same way, through fenced ```python blocks, because that is what a small coder model writes
most reliably: a block whose statements are only `search_experience(...)` / `experience_details(...)` calls is
answered from the library (here, or on a Ray cluster by the run's library reader: `ExperienceAnswers`); any other
block runs in the sandbox (`flexlearn.sandbox`).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flexlearn.agents.templates import fence, fill, origin_of, shorten
from flexlearn.errors import ConfigError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.shown import Shown
from flexlearn.retrieval.base import Retriever
from flexlearn.sandbox import SandboxLimits

TOOL_NAMES = ("python", "experience")
SEARCH = "search_experience"
DETAILS = "experience_details"


def parse_tools(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Tool names from `--tools python,experience` or a list; an unknown name fails before any model call."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec or ())
    names: list[str] = []
    for part in parts:
        name = part.strip().lower()
        if not name:
            continue
        if name not in TOOL_NAMES:
            raise ConfigError(f"unknown tool {name!r}; choose from {', '.join(TOOL_NAMES)}")
        if name not in names:
            names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class ToolBounds:
    """How far one tool-using attempt may go. Every call re-sends the whole conversation, so the token bound
    (prompt + completion, summed over the attempt's calls) is what bounds its cost."""

    max_steps: int = 12  # tool runs (blocks executed or searches answered) per attempt
    max_tokens_total: int = 24_000
    observation_chars: int = 1500  # one block's output as the model sees it (head and tail kept)
    max_searches: int = 5  # experience searches per attempt; each is also a step
    search_k: int = 3  # entries one search returns
    entry_chars: int = 300  # an entry's content in a search result or a child listing
    # A step in the transcript the distiller reads: enough to see the approach and the value it printed.
    transcript_code_chars: int = 600
    transcript_output_chars: int = 300


@dataclass
class ExperienceTool:
    """`search_experience(query, zone=None, level=None)` over a `Retriever`, and `experience_details(id)` to go
    from a principle to its patterns and from a pattern to its cases, as the paper's retriever does.

    It reads the library through `Shown`, so a quarantined entry never reaches the model, as a hit, a parent or
    a child; and every entry's text is fenced and names its origin, as retrieved guidance does."""

    retriever: Retriever
    shown: Shown
    bounds: ToolBounds = field(default_factory=ToolBounds)

    def search(self, query: str, zone: str | None = None, level: str | None = None) -> tuple[str, list[str]]:
        """The result text for the model and the ids it shows."""
        try:
            z = Zone(zone.lower()) if zone else None
            lv = Level(level.lower()) if level else None
        except ValueError:
            return ('zone must be "golden" or "warning"; level "principle", "pattern" or "case".', [])
        hits = self.retriever.search(str(query), k=self.bounds.search_k, zone=z, level=lv)
        if not hits:
            return "No experience matches that query.", []
        lines = []
        for hit in hits:
            lines.append(self._line(hit.experience))
            kids = self.shown.children(hit.experience.id)
            if kids:
                label = "patterns" if hit.experience.level == Level.PRINCIPLE else "cases"
                lines.append(f"    {label}: " + "; ".join(f"[{c.id}] {fence(c.title or c.zone)}" for c in kids[:5]))
        return "\n".join(lines), [h.experience.id for h in hits]

    def details(self, id: str) -> tuple[str, list[str]]:
        exp = self.shown.find(str(id).strip().strip("[]"))
        if exp is None:
            return f"No experience with id {id!r}; use an id shown in brackets by {SEARCH}.", []
        lines = [
            f"[{exp.id}] {exp.zone} {exp.level} ({fence(origin_of(exp))}): {fence(exp.title)}",
            fence(exp.content),
        ]
        lines += [f"e.g. {fence(shorten(x, self.bounds.entry_chars))}" for x in exp.examples[:2]]
        if (parent := self.shown.parent(exp)) is not None:
            lines.append(f"part of: {self._line(parent)}")
        kids = self.shown.children(exp.id)
        if kids:
            lines.append("patterns:" if exp.level == Level.PRINCIPLE else "cases:")
            lines += [f"  {self._line(c)}" for c in kids[:8]]
        return "\n".join(lines), [exp.id, *(c.id for c in kids[:8])]

    async def answer(self, call: LibraryCall) -> tuple[str, list[str]]:
        """One call's observation and the ids it showed, answered here at once (see `ExperienceAnswers`)."""
        return answer_library_call(self, call)

    def _line(self, e: Experience) -> str:
        head = f"[{e.id}] {e.zone} {e.level} ({fence(origin_of(e))})"
        return f"{head} {fence(e.title)}: {fence(shorten(e.content, self.bounds.entry_chars))}"


class ExperienceAnswers(Protocol):
    """What answers the experience tool's calls for an actor: an `ExperienceTool` over the library in this process,
    or, in a Ray worker, a proxy of the run's library reader (`flexlearn.loop.ray_reader`), which answers with an
    `ExperienceTool` of its own. Awaited, so that a call answered elsewhere holds no event loop while it is out."""

    async def answer(self, call: LibraryCall) -> tuple[str, list[str]]:
        """The observation for `call` and the ids of the entries it showed."""
        ...


@dataclass(frozen=True)
class ToolSet:
    """The tools one actor may use, with their limits."""

    python: bool = True
    experience: ExperienceAnswers | None = None
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    bounds: ToolBounds = field(default_factory=ToolBounds)

    @property
    def names(self) -> tuple[str, ...]:
        return (("python",) if self.python else ()) + (("experience",) if self.experience else ())

    def instructions(self) -> str:
        """What the system prompt says about the tools."""
        parts = []
        if self.python:
            parts.append(fill("tool_actor_python"))
        if self.experience is not None:
            parts.append(fill("tool_actor_experience", max_searches=str(self.bounds.max_searches)))
        return "\n".join(p.strip() for p in parts)


def make_toolset(
    names: Sequence[str],
    *,
    shown: Shown | None = None,
    retriever: Retriever | None = None,
    limits: SandboxLimits | None = None,
    bounds: ToolBounds | None = None,
    answers: ExperienceAnswers | None = None,
) -> ToolSet | None:
    """The tools `names` asks for (None for none). The experience tool needs a library to search, given as what a
    model may read of it (`shown()` of the library) and the retriever, or as what answers its calls elsewhere
    (`answers`: a Ray worker's proxy of the run's library reader)."""
    names = parse_tools(names)
    if not names:
        return None
    bounds = bounds or ToolBounds()
    experience: ExperienceAnswers | None = None
    if "experience" in names:
        if answers is not None:
            experience = answers
        elif shown is None or retriever is None:
            raise ConfigError("tool 'experience' searches an experience library: pass --library")
        else:
            experience = ExperienceTool(retriever, shown, bounds)
    return ToolSet(python="python" in names, experience=experience, limits=limits or SandboxLimits(), bounds=bounds)


@dataclass
class LibraryCall:
    """One `search_experience` / `experience_details` call read from a block, or why it could not be read."""

    name: str
    args: list[object]
    kwargs: dict[str, object]
    error: str = ""


def library_calls(code: str) -> list[LibraryCall] | None:
    """The experience calls of a block that holds nothing else (a call may be wrapped in `print`), None when the
    block does not mention them. A block that mixes them with other code gets one call carrying an error: they
    run outside the sandbox, so their results cannot feed the block's other code."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    named = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in (SEARCH, DETAILS)]
    if not named:
        return None
    calls: list[LibraryCall] = []
    assigned: set[str] = set()
    for stmt in tree.body:
        node = stmt.value if isinstance(stmt, ast.Expr | ast.Assign) else None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            node = node.args[0] if len(node.args) == 1 and not node.keywords else None
        if isinstance(stmt, ast.Expr) and isinstance(node, ast.Name) and node.id in assigned:
            continue  # `print(r)` after `r = search_experience(...)`: the call's result is shown anyway
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (SEARCH, DETAILS)):
            return [LibraryCall(SEARCH, [], {}, error=_MIXED)]
        if isinstance(stmt, ast.Assign):
            assigned |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg or "": ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            return [LibraryCall(node.func.id, [], {}, error='Pass plain strings, e.g. search_experience("query").')]
        calls.append(LibraryCall(node.func.id, args, kwargs))
    return calls


_MIXED = (
    f"{SEARCH}(...) and {DETAILS}(...) run outside the sandbox: put them alone in a python block, "
    "then use what they return in your next block."
)


async def ask_library(tool: ExperienceAnswers | None, call: LibraryCall) -> tuple[str, list[str]]:
    """The observation for one experience call and the ids it showed, from `tool` wherever it answers (here, or
    the run's library reader on a Ray cluster)."""
    if tool is None:
        return answer_library_call(None, call)
    return await tool.answer(call)


def answer_library_call(tool: ExperienceTool | None, call: LibraryCall) -> tuple[str, list[str]]:
    """The observation for one experience call, and the ids of the entries it showed."""
    if tool is None:
        return "No experience library is available here; solve the problem with Python alone.", []
    if call.error:
        return call.error, []
    try:
        if call.name == SEARCH:
            return tool.search(*call.args, **call.kwargs)  # type: ignore[arg-type]
        return tool.details(*call.args, **call.kwargs)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        usage = f'{SEARCH}("query", zone=None, level=None)' if call.name == SEARCH else f'{DETAILS}("id")'
        return f"Call it as {usage}.", []
