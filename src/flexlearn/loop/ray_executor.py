"""The ray executor (`learn --executor ray`): each problem's chain (exploration and distillation, see
`flexlearn.loop.executor`) runs as a Ray task on a cluster, while this process keeps retrieval, the updater's
decisions, the writes and the run's record.

The chains run in a few long-lived async Ray actors (`Explorer`), one per CPU the cluster has free, up to
`concurrency`. Each is given, once and by value, the task, the settings, the training problems when worked
examples are drawn from them, and the recipe of every model (`flexlearn.models.recipe`: its URI, prompt kind,
timeout and retry policy), from which it builds its own clients; every chain is then sent the problem, the run id
and the guidance retrieved for it here. An actor works on many chains at once on its own event loop, as this
process does in-process, and sends back each chain's trajectory, candidates and the calls its models made since
its last reply, which this process adds to the run's meter. A chain whose worker dies under it (its process, or its
node, lost) is sent again at once to another actor that answers, or, while none does, to the first that Ray has
started again (a chain writes nothing); dying under it twice, it fails as at the model. An actor that stopped
takes no chains until it answers again: Ray starts it again on any node with a free CPU, up to `MAX_RESTARTS`
times, and while no node has one (its node lost, the others' CPUs held by this run's other actors) it waits,
and the run goes on with the rest.

With the experience tool, the actors' chains ask the run's library reader, one more actor, on this process's node
(`flexlearn.loop.ray_reader`), started for the run and killed at its end.

`concurrency` keeps its meaning, model calls in flight in all: a chain makes one call at a time, and each chain
sent out holds one of the actor model's call slots here until it is back (the updater's calls, made here, take
the same slots when it is the same model). The environment the models are built from (FLEX_* variables and the
API keys) goes to the actors with them, as their runtime environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from flexlearn.agents.tools import ToolBounds, ToolSet, make_toolset
from flexlearn.errors import ConfigError, ModelError
from flexlearn.experience import Experience
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.config import LearnConfig
from flexlearn.loop.executor import Chain, Executor, chain
from flexlearn.loop.ray_reader import RemoteExperience, first_line, start_reader, stop_reader
from flexlearn.models.middleware import Meter, limiter_of
from flexlearn.models.recipe import ModelRecipe, recipe_of
from flexlearn.tasks.base import Problem, Task

log = logging.getLogger(__name__)

# The roles whose calls a chain makes (the updater's stay in the driver).
CHAIN_ROLES = ("actor", "critic", "distiller")
# The variables a model is built from, beyond its URI: keys, reply caps, the question limit.
FORWARDED = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
# How long the actors may take to start (a cold worker imports flexlearn and its task) before the run is refused.
START_TIMEOUT_S = 300.0
# How often a chain whose worker stopped under it is sent again before its problem fails.
RESENDS = 1
# How long the actors may take to close their models' clients when the run ends.
CLOSE_TIMEOUT_S = 10.0
# How often Ray starts an actor again after it died (a crash under a chain, a node lost).
MAX_RESTARTS = 3


def forwarded_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables the actors' models are built with, from this process's environment."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in environ.items() if k.startswith("FLEX_") or k in FORWARDED}


@dataclass
class Reply:
    """One chain's result as an actor sends it back: the chain, or the model error it ended with, and the calls
    the actor's models made since its previous reply (`Meter.snapshot` differences, by role)."""

    chain: Chain | None
    error: str | None = None
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The chain's own time in the worker: the driver's round trip less this is what Ray cost it.
    seconds: float = 0.0
    node: str = ""  # the id of the Ray node it ran on


def _difference(now: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for role, stats in now.items():
        earlier = before.get(role, {})
        delta = {name: value - earlier.get(name, 0) for name, value in stats.items()}
        if any(delta.values()):
            out[role] = delta
    return out


class Explorer:
    """Runs chains in a Ray worker: the models built once from their recipes (on the actor's event loop, at its
    first chain), many chains at once. With the experience tool, its calls go to the run's library reader."""

    def __init__(
        self,
        task: Task,
        recipes: list[ModelRecipe],
        roles: dict[str, int],
        config: LearnConfig,
        pool: Sequence[Problem],
        reader: Any = None,
        bounds: ToolBounds | None = None,
    ) -> None:
        self.task, self.recipes, self.roles, self.config, self.pool = task, recipes, roles, config, list(pool)
        self.meter = Meter()
        self.reported: dict[str, dict[str, Any]] = {}
        self.agents: Agents | None = None
        answers = RemoteExperience(reader) if reader is not None else None
        self.tools = make_toolset(config.explore.tools, answers=answers, bounds=bounds)
        self.node = str(ray.get_runtime_context().get_node_id())

    def ready(self) -> bool:
        return True

    def _agents(self) -> Agents:
        if self.agents is None:
            models = [r.build(concurrency=self.config.concurrency, meter=self.meter) for r in self.recipes]
            actor, critic, distiller = (models[self.roles[role]] for role in CHAIN_ROLES)
            self.agents = Agents(actor, critic=critic, distiller=distiller, meter=self.meter)
        return self.agents

    async def chain(self, problem: Problem, guidance: list[Experience], run_id: str) -> Reply:
        started = time.perf_counter()
        try:
            done = await chain(
                problem,
                task=self.task,
                agents=self._agents(),
                config=self.config,
                run_id=run_id,
                guidance=guidance,
                pool=self.pool,
                tools=self.tools,
            )
            reply = Reply(done)
        except ModelError as exc:
            reply = Reply(None, error=str(exc))
        now = self.meter.snapshot()
        reply.calls, self.reported = _difference(now, self.reported), now
        reply.seconds, reply.node = time.perf_counter() - started, self.node
        return reply

    async def close(self) -> None:
        """Close the models' clients (before the actor is killed)."""
        if self.agents is not None:
            await self.agents.aclose()
            self.agents = None


RemoteExplorer = ray.remote(Explorer)


def _recipes(agents: Agents) -> tuple[list[ModelRecipe], dict[str, int]]:
    """The distinct models of the chain's roles as recipes, and which one each role uses (roles sharing a model
    here share one in the worker too)."""
    recipes: list[ModelRecipe] = []
    seen: dict[int, int] = {}
    roles: dict[str, int] = {}
    for role in CHAIN_ROLES:
        model = getattr(agents, role)
        if id(model) not in seen:
            recipe = recipe_of(model)
            if recipe is None:
                raise ConfigError(
                    f"the ray executor builds each model again in its workers from its URI, but the {role}'s model "
                    f"{model.name!r} was not made by flexlearn.connect (or flex learn's --model); use one that was, "
                    "or the inprocess executor"
                )
            seen[id(model)] = len(recipes)
            recipes.append(recipe)
        roles[role] = seen[id(model)]
    return recipes, roles


def _connect(address: str | None) -> bool:
    """Connect this process to the Ray cluster at `address` unless it already is; True when this call connected
    (and so `RayExecutor.aclose` disconnects). Ray's own SIGTERM handler (it exits at once) is put back to the one
    before, so a terminated run still unwinds as the CLI says."""
    if ray.is_initialized():
        return False
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = address or "RAY_ADDRESS, or a cluster started on this machine"
        raise ConfigError(f"cannot connect to the Ray cluster at {where}: {exc}") from exc
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return True


class RayExecutor(Executor):
    """Chains as tasks of `Explorer` actors on a Ray cluster (see the module doc)."""

    def __init__(
        self,
        actors: list[Any],
        slots: asyncio.Semaphore,
        meter: Meter | None,
        owns_ray: bool,
        reader: tuple[Any, str] | None = None,
    ) -> None:
        self.actors = actors
        self.busy = [0] * len(actors)
        self.slots = slots
        self.meter = meter
        self.owns_ray = owns_ray
        # The experience tool's library reader and the node it runs on (this process's); None without the tool.
        self.reader, self.reader_node = reader if reader is not None else (None, None)
        # Chains back, and their round trips less their time in the worker (Ray's cost: scheduling, moving the
        # problem and the reply), logged when the executor closes; chains back by the node they ran on, and
        # chains sent again because their worker stopped under them.
        self.overheads: list[float] = []
        self.nodes: Counter[str] = Counter()
        self.resent = 0
        self.down: dict[int, asyncio.Task[None]] = {}  # actors that stopped, each with what waits for it
        self.dead: set[int] = set()  # actors Ray will not start again

    @classmethod
    async def open(
        cls,
        config: LearnConfig,
        *,
        task: Task,
        agents: Agents,
        pool: Sequence[Problem],
        workers: int | None = None,
        library: Library | None = None,
        tools: ToolSet | None = None,
    ) -> RayExecutor:
        """Connect to the cluster (`config.ray_address`) and start `workers` actors (default: one per free CPU, up
        to `config.concurrency`), each ready before this returns, and, with the experience tool, the reader of
        `library` on this process's node. ConfigError when a model cannot be rebuilt, the cluster cannot be
        reached or the actors do not start."""
        recipes, roles = _recipes(agents)
        searches = "experience" in config.explore.tools
        if searches and library is None:
            raise ConfigError("tool 'experience' searches an experience library: pass --library")
        bounds = tools.bounds if tools is not None else ToolBounds()
        owns = _connect(config.ray_address)
        reader: tuple[Any, str] | None = None
        try:
            env = forwarded_env()
            if searches and library is not None:
                reader = await start_reader(
                    library,
                    retriever=config.retriever,
                    bounds=bounds,
                    env=env,
                    restarts=MAX_RESTARTS,
                    timeout=START_TIMEOUT_S,
                )
            if workers is None:
                free = int(ray.available_resources().get("CPU", 0))
                workers = max(1, min(free, config.concurrency))
            # The training problems only where worked examples are drawn from them. By value, not as an object in
            # the store: a restarted actor is given its arguments again, and a stored one may be gone by then.
            handle = reader[0] if reader is not None else None
            args = (task, recipes, roles, config, list(pool) if config.explore.shots else [], handle, bounds)
            actors = await _start_explorers(args, workers, env)
        except BaseException:
            if reader is not None:
                ray.kill(reader[0])
            if owns:
                ray.shutdown()
            raise
        limiter = limiter_of(agents.actor)
        slots = limiter.slots if limiter is not None else asyncio.Semaphore(max(1, config.concurrency))
        return cls(actors, slots, agents.meter, owns, reader)

    async def chain(self, problem: Problem, *, guidance: list[Experience], run_id: str) -> Chain:
        async with self.slots:
            reply = await self._send(problem, guidance, run_id)
        if self.meter is not None:
            self.meter.merge(reply.calls)
        if reply.error is not None:
            raise ModelError(reply.error)
        assert reply.chain is not None
        return reply.chain

    async def _send(self, problem: Problem, guidance: list[Experience], run_id: str) -> Reply:
        """The chain's reply from the least busy actor that answers. A chain whose worker stopped under it (or that
        found its actor restarting) is sent again at once to another (or, while none answers, to the first back):
        a chain writes nothing, so running it twice costs only its calls. Stopped `RESENDS` + 1 times, it fails as
        at the model, and `--resume` retries it."""
        failures = 0
        while True:
            i = await self._pick()
            self.busy[i] += 1
            try:
                sent = time.perf_counter()
                reply: Reply = await self.actors[i].chain.remote(problem, guidance, run_id)
                self.overheads.append(time.perf_counter() - sent - reply.seconds)
                self.nodes[reply.node] += 1
                return reply
            except RayActorError as exc:  # ActorDiedError, ActorUnavailableError (restarting, or lost under it)
                failures += 1
                self._stopped(i)
                if failures > RESENDS:
                    raise ModelError(
                        f"the Ray worker exploring {problem.id} stopped ({failures} times): {first_line(exc)}"
                    ) from exc
                self.resent += 1
            finally:
                self.busy[i] -= 1

    async def _pick(self) -> int:
        """The least busy actor that answers; while none does but some may again, the first that does."""
        while True:
            up = [i for i in range(len(self.actors)) if i not in self.dead and i not in self.down]
            if up:
                return min(up, key=self.busy.__getitem__)
            if not self.down:
                raise ModelError(
                    f"every Ray worker of this run has stopped (each was started again {MAX_RESTARTS} times)"
                )
            await asyncio.wait(list(self.down.values()), return_when=asyncio.FIRST_COMPLETED)

    def _stopped(self, i: int) -> None:
        """Actor `i` stopped under a chain: it takes no chains until it answers again."""
        if i not in self.down and i not in self.dead:
            self.down[i] = asyncio.create_task(self._wait_for(i))

    async def _wait_for(self, i: int) -> None:
        """Until actor `i` answers again (Ray restarts it, up to MAX_RESTARTS times, where a CPU is free), or is
        known dead for good, or START_TIMEOUT_S has passed (then it is taken for dead)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                try:
                    await self.actors[i].ready.remote()
                    return
                except ActorUnavailableError:  # restarting, or waiting for a node with a free CPU
                    await asyncio.sleep(0.2)
                except RayActorError:
                    break
            self.dead.add(i)
        finally:
            del self.down[i]

    async def aclose(self) -> None:
        if self.overheads:
            median = statistics.median(self.overheads)
            log.info(
                "ray executor: %d chains on %d workers (%s), %d sent again; a chain's round trip less its time in "
                "the worker: median %.1f ms, mean %.1f ms",
                len(self.overheads),
                len(self.actors),
                ", ".join(f"{n} on node {node[:8]}" for node, n in sorted(self.nodes.items())),
                self.resent,
                1000 * median,
                1000 * statistics.fmean(self.overheads),
                extra={
                    "overheads_s": list(self.overheads),
                    "workers": len(self.actors),
                    "nodes": dict(self.nodes),
                    "resent": self.resent,
                    "waiting": len(self.down),  # stopped under a chain and not started again (no free CPU)
                    "reader_node": self.reader_node,
                },
            )
        for waiting in list(self.down.values()):
            waiting.cancel()
        actors, self.actors = self.actors, []
        with contextlib.suppress(Exception):  # a worker already gone, or slow to answer, is killed all the same
            closing = asyncio.gather(*(actor.close.remote() for actor in actors), return_exceptions=True)
            await asyncio.wait_for(closing, CLOSE_TIMEOUT_S)
        for actor in actors:
            ray.kill(actor)
        if self.reader is not None:
            await stop_reader(self.reader, CLOSE_TIMEOUT_S)
            self.reader = None
        if self.owns_ray:
            ray.shutdown()


async def _start_explorers(args: tuple[Any, ...], workers: int, env: dict[str, str]) -> list[Any]:
    """`workers` Explorer actors given `args`, each ready; ConfigError (and none left running) when they do not
    start within START_TIMEOUT_S."""
    options: dict[str, Any] = {"num_cpus": 1, "max_restarts": MAX_RESTARTS}
    if env:
        options["runtime_env"] = {"env_vars": env}
    actors = [RemoteExplorer.options(**options).remote(*args) for _ in range(workers)]
    try:
        await asyncio.wait_for(asyncio.gather(*(a.ready.remote() for a in actors)), START_TIMEOUT_S)
    except (TimeoutError, RayActorError) as exc:
        for actor in actors:
            ray.kill(actor)
        why = f"within {START_TIMEOUT_S:.0f}s" if isinstance(exc, TimeoutError) else f"({exc})"
        raise ConfigError(f"the Ray workers did not start {why}") from exc
    return actors
