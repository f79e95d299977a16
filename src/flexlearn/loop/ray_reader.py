"""The experience tool on a Ray cluster (`learn --executor ray --tools experience`): one Ray actor, the run's
library reader (`ExperienceReader`), answers the tool's calls for every worker, which asks it through a proxy
(`RemoteExperience`).

The library is a file on the driver's host or a database on a server that a worker's node may not reach. So the
reader is placed on the driver's node and kept there (a hard node affinity: Ray never starts it elsewhere, also
when it restarts it), opens the library itself as a `flex` command that reads one does (`Library.open_for_reading`),
and answers with the tool an in-process run uses (`ExperienceTool`): the run's retriever, by name, over its own
connection, and `Library.shown()`, so a quarantined entry never reaches a model, as a hit, a parent or a child. A
search catches the retriever up with what the driver has committed before it answers (a tantivy index reads the
library's revision and then its event log; FTS5 and a server's own search read the rows as committed), so a
worker sees what an in-process run would see at that moment. The reader writes nothing: a search and `Shown` only
read (neither touches the usage counters).

A worker awaits each answer on its event loop: a call is milliseconds, but a blocking `ray.get` there would stop
every other chain of that actor while it waits. A reader that cannot answer (its library unreadable, the reader
gone) makes that chain fail as at the model: the problem is failed, and `--resume` retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from flexlearn.agents.tools import ExperienceTool, LibraryCall, ToolBounds, answer_library_call
from flexlearn.errors import ConfigError, ModelError
from flexlearn.library.store import Library
from flexlearn.retrieval import get_retriever

# How long one answer may take before its chain fails: a search is milliseconds, but the first one may build the
# search index of a big library.
ANSWER_TIMEOUT_S = 300.0
# How often a call is sent again when the reader was restarted under it (a read, so sending it again is safe).
ANSWER_RETRIES = 2


class ExperienceReader:
    """The run's library, opened on the driver's node, answering the experience tool's calls one at a time (a
    synchronous actor: the library's connection is used by one thread)."""

    def __init__(self, target: str, retriever: str, bounds: ToolBounds) -> None:
        self.library = Library.open_for_reading(target)
        self.tool = ExperienceTool(get_retriever(retriever, self.library), self.library.shown(), bounds)

    def node(self) -> str:
        """The id of the node it runs on (it is ready once this answers)."""
        return str(ray.get_runtime_context().get_node_id())

    def answer(self, call: LibraryCall) -> tuple[str, list[str]]:
        """What the in-process tool would answer to `call` now (`answer_library_call`)."""
        return answer_library_call(self.tool, call)

    def close(self) -> None:
        """Close the library (before the actor is killed)."""
        self.library.close()


RemoteReader = ray.remote(ExperienceReader)


@dataclass
class RemoteExperience:
    """The experience tool in a Ray worker (`ExperienceAnswers`): each call sent to the run's reader and awaited."""

    reader: Any  # the reader's actor handle

    async def answer(self, call: LibraryCall) -> tuple[str, list[str]]:
        """The reader's answer to `call`; ModelError when it cannot give one, so the chain fails as at the model."""
        if call.error:  # nothing to read: the call could not be parsed
            return call.error, []
        try:
            reply: tuple[str, list[str]] = await asyncio.wait_for(self.reader.answer.remote(call), ANSWER_TIMEOUT_S)
        except (RayError, TimeoutError) as exc:
            raise ModelError(f"the run's library reader did not answer {call.name}(...): {first_line(exc)}") from exc
        return reply


def first_line(exc: BaseException) -> str:
    """An exception's first line (Ray's errors carry the remote traceback below it), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def library_target(library: Library) -> str:
    """Where the reader opens `library`: a file's absolute path (the reader's working folder is not the driver's),
    or the URL the library on a server was opened with, its password included, as the models' API keys go to the
    workers."""
    if library.path is not None:
        return str(Path(library.path).resolve())
    target = getattr(library, "_target", None)  # what `Library.open` was given, as `ServerSource.of` reads it
    if target is None:
        raise ConfigError(f"cannot tell the Ray workers where {library.location} is")
    return str(target)


async def start_reader(
    library: Library,
    *,
    retriever: str,
    bounds: ToolBounds,
    env: dict[str, str],
    restarts: int,
    timeout: float,
) -> tuple[Any, str]:
    """The run's library reader, started on this process's node and ready (its library open, its retriever
    built), and the id of the node it runs on. ConfigError when it does not start within `timeout` seconds or
    cannot open the library."""
    here = ray.get_runtime_context().get_node_id()
    options: dict[str, Any] = {
        "num_cpus": 0,  # it waits on reads: a CPU held for it would be one worker fewer
        "max_restarts": restarts,
        "max_task_retries": ANSWER_RETRIES,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=False),
    }
    if env:
        options["runtime_env"] = {"env_vars": env}
    reader = RemoteReader.options(**options).remote(library_target(library), retriever, bounds)
    try:
        node: str = await asyncio.wait_for(reader.node.remote(), timeout)
    except (TimeoutError, RayError) as exc:
        ray.kill(reader)
        why = f"within {timeout:.0f}s" if isinstance(exc, TimeoutError) else f"({first_line(exc)})"
        raise ConfigError(f"the library reader of the experience tool did not start {why}") from exc
    return reader, node


async def stop_reader(reader: Any, timeout: float) -> None:
    """Close the reader's library and kill it (at the end of the run, however it ended)."""
    with contextlib.suppress(TimeoutError, RayError):  # gone already, or slow: killed all the same
        await asyncio.wait_for(reader.close.remote(), timeout)
    ray.kill(reader)
