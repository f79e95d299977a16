"""`flex learn --executor ray`: problems explored and distilled as Ray tasks on a local Ray instance (two CPUs),
against the scripted model server, learn the same library as an in-process run of the same problems (same
entries, nothing lost or duplicated); an interrupted Ray run resumes to it; a failure at the model in a worker is
a failed problem, as in-process; the experience tool on a worker is answered as in-process, by the run's library
reader, never with a quarantined entry; and without the option Ray is never imported. (A cluster of two nodes:
tests/test_ray_cluster.py.)"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flexlearn
from flexlearn.agents.tools import ExperienceTool, LibraryCall, library_calls
from flexlearn.errors import ConfigError, LibraryError, ModelError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.loop.config import LearnConfig
from flexlearn.loop.executor import open_executor
from flexlearn.loop.explore import ExploreConfig
from flexlearn.models.function import FunctionModel
from flexlearn.retrieval import get_retriever
from flexlearn.settings import LearnSettings
from flexlearn.tasks import Problem, Score, get_task
from flexlearn.tasks.math import MathTask
from tests.support.cli import TRAIN, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI, FakeRequest, FakeResponse, error_body
from tests.support.scripted_flex import ScriptedFlex
from tests.support.searching_flex import CANARY, SearchingFlex, seed_library

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed (the ray extra: pip install 'flexlearn[ray]'; the dev extra, which CI installs, "
    "has it)",
)

# Two rollouts of two rounds: a problem's chain is up to four actor calls, two critic calls and the distiller's.
EXPLORE = ("--rollouts", "2", "--rounds", "2", "--all-rollouts")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray instance of two CPUs for the module, started here; its address is what `--ray-address` takes
    (the `flex` subprocesses connect to it as to any existing cluster)."""
    import ray

    previous = signal.getsignal(signal.SIGTERM)  # ray.init sets its own; pytest keeps the one it had
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    signal.signal(signal.SIGTERM, previous)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def entries(path: Path) -> list[tuple[str, str, str]]:
    with Library.open(path, create=False) as lib:
        return sorted((str(e.zone), str(e.level), e.content.strip()) for e in lib.list())


def learn(train: Path, lib: Path, server: FakeOpenAI, *extra: str) -> dict[str, Any]:
    proc = flex(
        "learn", "--task", "math", "--train", str(train), "--library", str(lib), "--model", model_uri(server),
        *EXPLORE, "--json", *extra,
    )  # fmt: skip
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], list[tuple[str, str, str]]]:
    """The training set, an in-process run's summary and the library it learned (entries as zone, level, text)."""
    folder = tmp_path_factory.mktemp("reference")
    train = write_set(folder / "train.jsonl", TRAIN)
    with FakeOpenAI(ScriptedFlex()) as server:
        out = learn(train, folder / "inprocess.flexlib", server)
    return train, out, entries(folder / "inprocess.flexlib")


def test_ray_learns_the_library_an_in_process_run_learns(
    tmp_path: Path, scripted_server: FakeOpenAI, ray_address: str, reference: Any
) -> None:
    train, inprocess, expected = reference
    lib = tmp_path / "ray.flexlib"
    out = learn(train, lib, scripted_server, "--executor", "ray", "--ray-address", ray_address)
    got = entries(lib)
    assert got == expected and len(got) > 0
    assert not [e for e, n in Counter(got).items() if n > 1], "duplicate entries"
    for key in ("total", "solved", "unsolved", "failed", "actions"):
        assert out["summary"][key] == inprocess["summary"][key], key
    # The workers' calls reach the run's meter: exploration and distillation are deterministic, call for call.
    for role in ("actor", "critic", "distiller"):
        assert out["calls"][role]["calls"] == inprocess["calls"][role]["calls"] > 0, role
    assert out["calls"]["updater"]["calls"] > 0  # decided here, in the driver
    with Library.open(lib, create=False) as opened:
        assert [r.status for r in opened.runs()] == ["done"]


def test_an_interrupted_ray_run_resumes_to_the_same_library(tmp_path: Path, ray_address: str, reference: Any) -> None:
    import ray

    train, _, expected = reference
    lib = tmp_path / "ray.flexlib"
    scripted = ScriptedFlex(delay=0.25)
    base = ["learn", "--task", "math", "--train", str(train), "--library", str(lib), *EXPLORE, "--concurrency", "1"]
    with FakeOpenAI(scripted) as server:
        args = [*base, "--model", model_uri(server), "--executor", "ray", "--ray-address", ray_address]
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("FLEX_MODEL", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flexlearn", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 120
        while not _done(lib) and time.monotonic() < deadline:  # stopped with a problem or so learned
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, stderr
        assert "terminated (SIGTERM)" in stderr and "--resume" in stderr and "Traceback" not in stderr, stderr
        with Library.open(lib, create=False) as opened:
            (run,) = opened.runs()
            assert run.status == "running"
            done = [s for s in opened.problem_status(run.run_id).values() if s in ("solved", "unsolved")]
        assert 0 < len(done) < len(TRAIN), done
        # The interrupted run's actors went with it: the cluster's CPUs are free again.
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2
        scripted.delay = 0.0
        again = flex(*args, "--resume", "--json")
    summary = json.loads(again.stdout)["summary"]
    assert summary["resumed"] and summary["skipped"] == len(done) and summary["failed"] == 0
    assert entries(lib) == expected
    with Library.open(lib, create=False) as opened:
        assert [r.status for r in opened.runs()] == ["done"]


def _done(lib: Path) -> int:
    """The problems the library's run has learned from so far (0 before the library or its run exists, and while
    the run is still making the file a library)."""
    if not lib.exists():
        return 0
    try:
        opened = Library.open_for_reading(lib)
    except LibraryError:  # the file is there, its schema not yet
        return 0
    with opened:
        runs = opened.runs()
        status = opened.problem_status(runs[0].run_id) if runs else {}
    return sum(1 for s in status.values() if s in ("solved", "unsolved"))


def _failing(scripted: ScriptedFlex, request: FakeRequest) -> str | FakeResponse:
    """The scripted server, but the actor's request for one problem is refused (a 400: not retried)."""
    messages = request.json.get("messages", [])
    if "careful problem solver" in messages[0]["content"] and "product of 6 and 7" in messages[-1]["content"]:
        return FakeResponse(400, json=error_body("this request is refused"))
    return scripted(request)


async def test_a_failure_at_the_model_in_a_worker_is_a_failed_problem(tmp_path: Path, ray_address: str) -> None:
    """Through the Python API (`flexlearn.alearn(executor="ray")`) on this process's Ray connection."""
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    scripted = ScriptedFlex()
    results = {}
    with FakeOpenAI(lambda request: _failing(scripted, request)) as server:
        for executor in ("inprocess", "ray"):
            model = flexlearn.connect(model_uri(server))
            with Library.open(tmp_path / f"{executor}.flexlib") as lib:
                summary = await flexlearn.alearn(
                    train, task="math", agents=model, library=lib, rollouts=2, rounds=2, executor=executor
                )
                status = lib.problem_status(summary.run_id)
            await model.aclose()
            results[executor] = (summary, status, model.meter.stats("actor"))
    for summary, status, actor in results.values():
        assert summary.failed == 1 and summary.solved == len(TRAIN) - 1
        assert [pid for pid, s in status.items() if s == "failed"] == ["train.jsonl:2"]
        assert actor.failures == 1  # the refused call, counted in the worker and merged into the run's meter
    assert entries(tmp_path / "ray.flexlib") == entries(tmp_path / "inprocess.flexlib")
    assert results["ray"][0].actions == results["inprocess"][0].actions


class Dying(MathTask):
    """The math task, but the process scoring the third problem exits at once, as often as FLEX_TEST_DEATHS says
    (a file, FLEX_TEST_DEATHS_FILE, counts them): a Ray worker that dies under a chain."""

    def score(self, reply: str, problem: Problem) -> Score:
        deaths, count = int(os.environ.get("FLEX_TEST_DEATHS", "0")), Path(os.environ.get("FLEX_TEST_DEATHS_FILE", "-"))
        if problem.id.endswith(":3") and deaths and (died := len(count.read_text()) if count.exists() else 0) < deaths:
            count.write_text("x" * (died + 1))
            os._exit(1)
        return super().score(reply, problem)


@pytest.mark.parametrize("deaths", [1, 2])
async def test_a_worker_that_dies_under_a_chain(
    tmp_path: Path,
    scripted_server: FakeOpenAI,
    ray_address: str,
    reference: Any,
    monkeypatch: pytest.MonkeyPatch,
    deaths: int,
) -> None:
    """One worker (concurrency 1), killed under the third problem's chain: Ray starts it again and the chain is sent
    again; killed under it twice, that problem fails as at the model, the rest are learned, and `resume` learns it.
    Either way the library is the in-process run's. The variables reach the worker as the FLEX_* environment does."""
    count = tmp_path / "deaths"
    monkeypatch.setenv("FLEX_TEST_DEATHS", str(deaths))
    monkeypatch.setenv("FLEX_TEST_DEATHS_FILE", str(count))
    train, _, expected = reference
    model = flexlearn.connect(model_uri(scripted_server), concurrency=1)
    settings = {"rollouts": 2, "rounds": 2, "all_rollouts": True, "concurrency": 1, "executor": "ray"}
    with Library.open(tmp_path / "lib.flexlib") as lib:
        first = await flexlearn.alearn(train, task=Dying(), agents=model, library=lib, **settings)
        assert count.read_text() == "x" * deaths
        failed = [pid for pid, s in lib.problem_status(first.run_id).items() if s == "failed"]
        if deaths == 1:
            assert failed == [] and first.failed == 0
        else:
            assert failed == [f"{train.name}:3"] and first.failed == 1
            again = await flexlearn.alearn(train, task=Dying(), agents=model, library=lib, resume=True, **settings)
            assert again.failed == 0 and again.skipped == len(TRAIN) - 1
        assert set(lib.problem_status(first.run_id).values()) <= {"solved", "unsolved"}
    await model.aclose()
    if deaths == 1:
        assert entries(tmp_path / "lib.flexlib") == expected
    got = entries(tmp_path / "lib.flexlib")
    assert got and not [e for e, n in Counter(got).items() if n > 1], "duplicate entries"


def test_without_the_option_ray_is_never_imported(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    train = write_set(tmp_path / "train.jsonl", TRAIN[:2])
    args = [
        "learn", "--task", "math", "--train", str(train), "--library", str(tmp_path / "lib.flexlib"),
        "--model", model_uri(scripted_server), "--rollouts", "1", "--rounds", "1",
    ]  # fmt: skip
    code = (
        "import sys\n"
        "from flexlearn.cli.app import app\n"
        f"app({args!r}, standalone_mode=False)\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not loaded, loaded\n"
        "import flexlearn.loop.executor\n"
        "assert 'ray' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    with Library.open(tmp_path / "lib.flexlib", create=False) as lib:
        assert lib.count() > 0


def test_what_the_ray_executor_cannot_do_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="add --executor ray"):
        LearnSettings.of(ray_address="127.0.0.1:6379")
    assert LearnSettings.of(executor="ray", tools="python,experience").tools == ("python", "experience")
    with pytest.raises(ConfigError, match="unknown executor"):
        LearnSettings.of(executor="dask")
    assert LearnSettings.of(executor="In-Process").executor == "inprocess"
    assert LearnSettings.of(executor="ray", tools="python").config(FunctionModel(lambda *a: "")).executor == "ray"
    # A model the workers cannot build again (not made by flexlearn.connect) is refused before Ray is reached.
    agents = flexlearn.Agents(FunctionModel(lambda *a: "Final answer: 1"))
    with pytest.raises(ConfigError, match=r"not made by flexlearn\.connect"):
        asyncio.run(
            open_executor(LearnConfig(executor="ray"), task=get_task("math"), agents=agents, pool=[], tools=None)
        )
    train = write_set(tmp_path / "train.jsonl", TRAIN[:1])
    lib = tmp_path / "lib.flexlib"
    proc = flex(
        "learn", "--task", "math", "--train", str(train), "--library", str(lib), "--model", "openai:m@http://127.0.0.1:9/v1",
        "--ray-address", "127.0.0.1:6379", check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "add --executor ray" in proc.stderr and "Traceback" not in proc.stderr
    assert not lib.exists()


def learn_with_the_tool(train: Path, lib: Path, *extra: str) -> tuple[SearchingFlex, list[str]]:
    """A `flex learn --tools experience` of `train` into the seeded library `lib`; the scripted server (with the
    tool answers it was shown) and the text of every request it had."""
    searching = SearchingFlex()
    with FakeOpenAI(searching) as server:
        learn(train, lib, server, "--tools", "experience", *extra)
        requests = [json.dumps(r.json) for r in server.requests]
    return searching, requests


def test_the_experience_tool_on_ray_answers_as_in_process(tmp_path: Path, ray_address: str, reference: Any) -> None:
    """The actor's tool on a Ray worker is answered by the run's library reader: every answer the actor is shown
    is one an in-process run shows (the same texts, as often), so the same library is learned; a quarantined
    entry reaches no model, as a hit, a parent or a child."""
    train = reference[0]
    runs = {}
    for executor in ("inprocess", "ray"):
        (tmp_path / executor).mkdir()
        lib = Path(seed_library(tmp_path / executor / "lib.flexlib", tmp_path / executor))
        extra = ("--executor", "ray", "--ray-address", ray_address) if executor == "ray" else ()
        runs[executor] = learn_with_the_tool(train, lib, *extra)
    (here, here_requests), (there, there_requests) = runs["inprocess"], runs["ray"]
    assert there.observations == here.observations
    shown = "\n".join(there.observations)
    assert all(f"[{id}]" in shown for id in ("S1", "S2", "S3")) and "No experience matches" in shown
    for requests in (here_requests, there_requests):
        assert not [r for r in requests if CANARY in r or "[Q1]" in r or "[Q2]" in r]
    got = entries(tmp_path / "ray" / "lib.flexlib")
    assert got == entries(tmp_path / "inprocess" / "lib.flexlib")
    assert not [e for e, n in Counter(got).items() if n > 1], "duplicate entries"
    # What the tool showed decided the attempts: only the kind it found nothing for was guessed wrong.
    warned = [text for zone, level, text in got if (zone, level) == ("warning", "case")]
    assert warned and all("difference" in text for text in warned), warned


def _call(code: str) -> LibraryCall:
    (call,) = library_calls(code) or []
    return call


async def test_the_library_reader_reads_what_the_driver_committed(
    tmp_path: Path, ray_address: str, library_target: Path | str
) -> None:
    """The reader, on this process's node, answers each call as the in-process tool does at that moment, for a
    file and for a library on a server: entries the driver commits are found by the next search, never a
    quarantined one until it is approved. A chain whose reader cannot answer (its library closed, the reader
    gone) fails as at the model; the run's end kills it."""
    import ray
    from ray.exceptions import RayActorError

    from flexlearn.loop.ray_executor import RayExecutor
    from flexlearn.loop.ray_reader import RemoteExperience

    searching = SearchingFlex()
    config = LearnConfig(explore=ExploreConfig(rollouts=1, rounds=1, tools=("experience",)), executor="ray")
    with FakeOpenAI(searching) as server, Library.open(seed_library(library_target, tmp_path)) as lib:
        model = flexlearn.connect(model_uri(server))
        here = ExperienceTool(get_retriever(config.retriever, lib), lib.shown())
        executor = await open_executor(
            config, task=get_task("math"), agents=flexlearn.Agents(model), pool=[], tools=None, library=lib
        )
        assert isinstance(executor, RayExecutor) and executor.reader is not None
        reader, there = executor.reader, RemoteExperience(executor.reader)

        async def both(code: str) -> tuple[str, list[str]]:
            answer = await there.answer(_call(code))
            assert answer == await here.answer(_call(code)), code
            return answer

        try:
            assert await reader.node.remote() == executor.reader_node == ray.get_runtime_context().get_node_id()
            for code in (
                'search_experience("quokkasum")',
                'search_experience("quokkaproduct wombat", zone="golden")',
                'search_experience("wombat", level="case")',
                'experience_details("S1")',
                'experience_details("S2")',
                'experience_details("Q1")',
                'experience_details("Q2")',
                'search_experience("x", zone="purple")',
            ):
                text, ids = await both(code)
                assert CANARY not in text and not {"Q1", "Q2"} & set(ids), (code, text)
            assert "No experience with id 'Q1'" in (await both('experience_details("Q1")'))[0]
            # Committed here, read there by the next call.
            added = lib.add(Experience(Zone.WARNING, Level.PRINCIPLE, "okapi", "okapi stripes"), reason="test")
            assert (await both('search_experience("okapi")'))[1] == [added.id]
            lib.approve("Q1")
            assert CANARY in (await both('experience_details("S1")'))[0]
            # A chain on a worker asks the reader.
            problem = Problem(id="p1", question="What is the sum of 12 and 30?", answer="42")
            await executor.chain(problem, guidance=[], run_id="r")
            assert any("[S1]" in seen for seen in searching.observations)
            await reader.close.remote()  # its library gone
            with pytest.raises(ModelError, match=r"library reader did not answer search_experience"):
                await executor.chain(problem, guidance=[], run_id="r")
            ray.kill(reader)  # the reader gone
            with pytest.raises(ModelError, match=r"library reader did not answer search_experience"):
                await executor.chain(problem, guidance=[], run_id="r")
        finally:
            await executor.aclose()
        await model.aclose()
    assert executor.reader is None
    with pytest.raises(RayActorError):
        await reader.node.remote()
