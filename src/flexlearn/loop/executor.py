"""Where a learn run works on each problem: the seam between `learn`'s scheduler and writer, which stay in this
process, and the part of a problem's chain that only calls models and the sandbox.

That part is `chain`: exploration (the actor and critic rounds of every rollout, sandboxed tools included) and
the distiller's candidates. It needs the problem, the task, the actor, critic and distiller, the settings and, when
exploring under the library, the guidance retrieved for it; it writes no library, and reads one only through the
experience tool (`Library.shown()`, never a quarantined entry). Everything else of a problem stays with `learn`:
retrieval, the updater's decisions and their re-checks, `apply`, the run's record and progress, so the library's
writes are serialized exactly as they are without an executor.

Two executors, chosen by `LearnConfig.executor`:

* ``inprocess`` (the default) runs the chain on this event loop, as `learn` always did;
* ``ray`` runs it as Ray tasks on a cluster (`flexlearn.loop.ray_executor`), which rebuild the models from their
  URIs, and whose experience tool asks a reader of the library on this process's node
  (`flexlearn.loop.ray_reader`). Ray is imported only when it is chosen.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from flexlearn.agents.distiller import Candidates
from flexlearn.agents.tools import ToolSet
from flexlearn.errors import ConfigError
from flexlearn.experience import Experience
from flexlearn.library.store import Library
from flexlearn.loop.absorb import distil_trajectory
from flexlearn.loop.agents import Agents
from flexlearn.loop.config import LearnConfig
from flexlearn.loop.explore import explore
from flexlearn.tasks.base import Problem, Task, reference_text
from flexlearn.trajectory import Trajectory

EXECUTORS = ("inprocess", "ray")


def executor_name(value: object) -> str:
    """The executor `value` names ("in-process" and any case are read as "inprocess"); ConfigError for another."""
    name = str(value).strip().lower().replace("-", "").replace("_", "")
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {value!r}; choose from {', '.join(EXECUTORS)}")
    return name


def check_executor(name: str, *, ray_address: str | None) -> None:
    """ConfigError, before anything runs, for settings the executor cannot honour."""
    if name != "ray":
        if ray_address is not None:
            raise ConfigError("--ray-address (ray_address) names a Ray cluster: add --executor ray")
        return
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("the ray executor needs Ray: pip install 'flexlearn[ray]'")


@dataclass
class Chain:
    """What one problem's chain produced: its trajectory and the distiller's candidates from it."""

    trajectory: Trajectory
    candidates: Candidates


async def chain(
    problem: Problem,
    *,
    task: Task,
    agents: Agents,
    config: LearnConfig,
    run_id: str,
    guidance: list[Experience],
    pool: Sequence[Problem],
    tools: ToolSet | None,
) -> Chain:
    """Explore `problem` and distil its trajectory: the calls of `agents.actor`, `critic` and `distiller` alone
    (ModelError when one fails for good). The same code runs in-process and in a Ray worker."""
    trajectory = await explore(
        problem,
        task=task,
        actor=agents.actor,
        critic=agents.critic,
        config=config.explore,
        guidance=guidance,
        meter=agents.meter,
        pool=pool,
        tools=tools,
    )
    candidates = await distil_trajectory(
        trajectory,
        question=task.render(problem),
        answer=reference_text(task, problem),
        category=task.name,
        known_category=problem.category,
        agents=agents,
        run_id=run_id,
        config=config,
    )
    return Chain(trajectory, candidates)


class Executor(ABC):
    """Runs problems' chains for one learn run. Opened by `open_executor` before the run writes anything, closed
    with `aclose` however the run ends."""

    @abstractmethod
    async def chain(self, problem: Problem, *, guidance: list[Experience], run_id: str) -> Chain:
        """`problem`'s chain (see `chain`); ModelError when it failed at a model, as in-process."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the executor holds."""


class InProcess(Executor):
    """The chain on this event loop, with the run's own models and tools."""

    def __init__(
        self, *, task: Task, agents: Agents, config: LearnConfig, pool: Sequence[Problem], tools: ToolSet | None
    ) -> None:
        self.task, self.agents, self.config, self.pool, self.tools = task, agents, config, pool, tools

    async def chain(self, problem: Problem, *, guidance: list[Experience], run_id: str) -> Chain:
        return await chain(
            problem,
            task=self.task,
            agents=self.agents,
            config=self.config,
            run_id=run_id,
            guidance=guidance,
            pool=self.pool,
            tools=self.tools,
        )

    async def aclose(self) -> None:
        """Nothing to release: the models are the run's own."""


async def open_executor(
    config: LearnConfig,
    *,
    task: Task,
    agents: Agents,
    pool: Sequence[Problem],
    tools: ToolSet | None,
    library: Library | None = None,
) -> Executor:
    """The executor `config.executor` names, ready to run chains (a Ray cluster connected and its workers
    started, with the experience tool a reader of `library` too). ConfigError when it cannot be opened."""
    name = executor_name(config.executor)
    check_executor(name, ray_address=config.ray_address)
    if name == "ray":
        from flexlearn.loop.ray_executor import RayExecutor  # Ray is imported here, and only here

        return await RayExecutor.open(config, task=task, agents=agents, pool=pool, library=library, tools=tools)
    return InProcess(task=task, agents=agents, config=config, pool=pool, tools=tools)
