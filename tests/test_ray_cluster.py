"""`learn(executor="ray")` on a Ray cluster of two nodes on this machine (`ray.cluster_utils.Cluster`: a head and a
second node, each its own raylet with one CPU, so each holds one worker): chains run on both nodes (the node each
reply says it came from), the library learned is the in-process run's, with the experience tool too, whose reader
sits on the head (this process's node); and removing the second node under a chain loses nothing and doubles
nothing: its chain is sent to the head's worker and the run completes."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flexlearn
from flexlearn.library.store import Library
from tests.support.cli import TRAIN, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI
from tests.support.scripted_flex import ScriptedFlex, parse
from tests.support.searching_flex import CANARY, SearchingFlex, seed_library

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (the ray extra: pip install 'flexlearn[ray]'; the dev extra, which CI installs, "
    "has it)",
)

SETTINGS: dict[str, Any] = {"rollouts": 2, "rounds": 2, "all_rollouts": True, "concurrency": 2}
EXECUTOR_LOG = "flexlearn.loop.ray_executor"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head node and a second node, one CPU each, this process connected to the head as a driver."""
    import ray
    from ray.cluster_utils import Cluster

    previous = signal.getsignal(signal.SIGTERM)  # ray.init sets its own; pytest keeps the one it had
    made = start_cluster(Cluster)
    try:
        ray.init(address=made.address, logging_level=logging.WARNING)
        signal.signal(signal.SIGTERM, previous)
        yield made
    finally:
        ray.shutdown()
        made.shutdown()


def start_cluster(cluster: Callable[[], Any], attempts: int = 3) -> Any:
    """A head and a second node, one CPU each. Tried again when a node does not start (its raylet gives up when
    its agents have not written their ports within 15 s, which a machine loaded by other work can exceed), each
    failed try shut down first."""
    for attempt in range(1, attempts + 1):
        made = cluster()
        try:
            made.add_node(num_cpus=1, include_dashboard=False)  # the first node added is the head
            made.add_node(num_cpus=1)
            made.wait_for_nodes()
            return made
        except Exception:
            made.shutdown()
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def nodes(cluster: Any) -> tuple[str, Any]:
    """The head's node id and the second node (added again where an earlier test removed it), both CPUs free."""
    import ray

    if not cluster.worker_nodes:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    wait_until(lambda: ray.available_resources().get("CPU", 0) == 2, 60)
    assert ray.get_runtime_context().get_node_id() == cluster.head_node.node_id  # the driver is on the head
    (second,) = cluster.worker_nodes
    return cluster.head_node.node_id, second


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def entries(path: Path) -> list[tuple[str, str, str]]:
    with Library.open(path, create=False) as lib:
        return sorted((str(e.zone), str(e.level), e.content.strip()) for e in lib.list())


async def learn(train: Path, lib: Path, server: FakeOpenAI, **settings: Any) -> flexlearn.LearnSummary:
    model = flexlearn.connect(model_uri(server), concurrency=SETTINGS["concurrency"])
    try:
        with Library.open(lib) as opened:
            return await flexlearn.alearn(train, task="math", agents=model, library=opened, **SETTINGS, **settings)
    finally:
        await model.aclose()


def executor_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The record the ray executor logs when it closes: its chains by node, those sent again, its reader's node."""
    (record,) = [r for r in caplog.records if r.name == EXECUTOR_LOG and hasattr(r, "nodes")]
    return record


async def test_learning_on_two_nodes_is_learning_in_process(
    tmp_path: Path, nodes: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """With the experience tool: the actor is shown the same answers as in-process and the same library is
    learned; chains ran on both nodes; the library reader ran on the head, this process's node."""
    head, second = nodes
    caplog.set_level(logging.INFO, logger=EXECUTOR_LOG)
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    shown: dict[str, SearchingFlex] = {}
    for executor in ("inprocess", "ray"):
        (tmp_path / executor).mkdir()
        shown[executor] = SearchingFlex()
        with FakeOpenAI(shown[executor]) as server:
            lib = Path(seed_library(tmp_path / executor / "lib.flexlib", tmp_path / executor))
            summary = await learn(train, lib, server, tools="experience", executor=executor)
        assert summary.failed == 0 and summary.solved == len(TRAIN)
    got = entries(tmp_path / "ray" / "lib.flexlib")
    assert got == entries(tmp_path / "inprocess" / "lib.flexlib")
    assert not [e for e, n in Counter(got).items() if n > 1], "duplicate entries"
    assert shown["ray"].observations == shown["inprocess"].observations and shown["ray"].observations
    assert CANARY not in "".join(shown["ray"].observations)
    record = executor_record(caplog)
    assert set(record.nodes) == {head, second.node_id}, record.nodes
    assert sum(record.nodes.values()) == len(TRAIN) and record.resent == 0
    assert record.reader_node == head


class Held(ScriptedFlex):
    """ScriptedFlex, but the first actor call of each problem in `held` waits for `release`: once every one has
    arrived, a chain of each is out on a worker."""

    def __init__(self, held: set[tuple[str, int, int]]) -> None:
        super().__init__()
        self.held, self.release = held, threading.Event()
        self.arrived: set[tuple[str, int, int]] = set()

    def actor(self, user: str) -> str:
        problem = parse(user.split("Problem:")[-1])
        with self.lock:
            first = problem in self.held and problem not in self.arrived
            if first:
                self.arrived.add(problem)
        if first:
            self.release.wait(120)
        return super().actor(user)


async def test_a_node_removed_under_a_chain_loses_nothing(
    tmp_path: Path, cluster: Any, nodes: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The fourth and fifth problems' chains held out, one on each node (two call slots, two workers), the second
    node is removed: its chain fails over to the head's worker, nothing is failed, lost or learned twice, and the
    library is the in-process run's. Ray starts the lost worker again, but no node has a CPU free for it: it
    waits to the end, and is killed with the rest."""
    head, second = nodes
    caplog.set_level(logging.INFO, logger=EXECUTOR_LOG)
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    with FakeOpenAI(ScriptedFlex()) as server:
        await learn(train, tmp_path / "inprocess.flexlib", server)
    held = Held(set(TRAIN[3:5]))
    with FakeOpenAI(held) as server:
        run = asyncio.create_task(learn(train, tmp_path / "ray.flexlib", server, executor="ray"))
        await asyncio.to_thread(wait_until, lambda: held.arrived == held.held or run.done(), 120)
        assert not run.done(), run.result()
        started = time.monotonic()
        await asyncio.to_thread(cluster.remove_node, second)
        held.release.set()
        summary = await run
    assert summary.failed == 0 and summary.solved + summary.unsolved == len(TRAIN)
    got = entries(tmp_path / "ray.flexlib")
    assert got == entries(tmp_path / "inprocess.flexlib")
    assert not [e for e, n in Counter(got).items() if n > 1], "duplicate entries"
    record = executor_record(caplog)
    # Both nodes ran chains before the second was removed; its held chain was sent again, to the head.
    assert set(record.nodes) == {head, second.node_id} and sum(record.nodes.values()) == len(TRAIN), record.nodes
    assert record.resent == 1 and record.waiting == 1
    # Sent again as soon as it failed (Ray took about 4 s to say so), not once its worker was back.
    assert time.monotonic() - started < 60
