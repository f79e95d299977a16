"""The outcome queue's absorber against the scripted model server: `record(..., wait=False)` returns at once
without a model call, a pass absorbs a batch exactly as `record` does, failures at the model are retried and then
kept, two absorbers on one queue apply each outcome once, review quarantines, and the background absorber drains
what is queued while it runs."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

import flexlearn
from flexlearn.experience import Experience, Level, Status, Zone
from flexlearn.library.store import Library
from flexlearn.loop.absorber import Absorber, Queued, aabsorb, absorb
from flexlearn.tasks import get_task
from tests.support.cli import model_uri
from tests.support.fake_openai import FakeOpenAI

KINDS = ("sum", "product", "difference")


def question(n: int) -> str:
    return f"What is the {KINDS[n % 3]} of {n + 10} and {n + 3}?"


def queue(lib: Library, n: int, first: int = 0) -> list[str]:
    """`n` outcomes queued as a user's agent records them, each a wrong guess at its own question."""
    return [
        flexlearn.record(lib, question(i), "A quick guess: 1.", correct=False, wait=False).id  # type: ignore[union-attr]
        for i in range(first, first + n)
    ]


def events_by_problem(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT problem_id, count(*) FROM events GROUP BY problem_id").fetchall())


def test_record_without_waiting_queues_at_once_and_calls_no_model(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    scripted_server.scripted.delay = 5.0  # type: ignore[attr-defined]  # a model call would take 5 s
    model = flexlearn.connect(model_uri(scripted_server))
    math = get_task("math")
    with Library.open(tmp_path / "lib.flexlib") as lib:
        started = time.monotonic()
        queued = flexlearn.record(lib, question(0), "12", correct=False, agents=model, task=math, wait=False)
        no_model = flexlearn.record(lib, question(1), "13", correct=True, wait=False)  # no agents needed
        assert time.monotonic() - started < 1.0
        assert isinstance(queued, Queued) and isinstance(no_model, Queued) and queued.queued
        stored = lib.outcome(queued.id)
        assert stored is not None and stored.status == "queued" and stored.outcome.category == "math"
        assert stored.outcome.extracted == "12"  # the task read the answer when it was queued
        assert lib.queue_stats()["queued"] == 2 and lib.count() == 0
    assert scripted_server.requests == []
    with pytest.raises(flexlearn.FlexError, match="needs agents"), Library.open(tmp_path / "lib.flexlib") as lib:
        flexlearn.record(lib, question(0), "12", correct=False)


async def test_a_pass_absorbs_the_batch_exactly_as_record_does(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
        with Library.open(tmp_path / "waited.flexlib") as waited, Library.open(tmp_path / "queued.flexlib") as lib:
            for i in range(5):
                await flexlearn.arecord(waited, question(i), "A quick guess: 1.", correct=False, agents=agents)
            ids = queue(lib, 5)
            seen: list[int] = []
            summary = await aabsorb(lib, agents=agents, batch_size=1, on_progress=lambda s: seen.append(s.absorbed))
            assert (summary.absorbed, summary.retried, summary.failed, summary.remaining) == (5, 0, 0, 0)
            assert seen == [1, 2, 3, 4, 5] and summary.actions["add"] >= 5
            # One outcome after the other, the library is the one record(wait=True) builds.
            assert lib.content_hash() == waited.content_hash() and lib.count() > 0
            for id in ids:
                done = lib.outcome(id)
                assert done is not None and done.status == "absorbed" and done.result is not None
                run_id = done.outcome.run_id
                assert lib.run_status(run_id) == "done" and lib.run_config(run_id)["models"]["actor"] == "external"
                assert lib.problem_status(run_id) == {done.outcome.problem_id: "unsolved"}
                assert set(done.result["experience_ids"]) <= {e.id for e in lib.list()}
            assert events_by_problem(lib.path) == events_by_problem(waited.path)

            # In batches of 8, concurrently: every outcome absorbed once.
            more = queue(lib, 12, first=5)
            summary = await aabsorb(lib, agents=agents)
            assert summary.absorbed == 12 and all(lib.outcome(id).status == "absorbed" for id in more)  # type: ignore[union-attr]
            assert len(lib.runs("record")) == 17


async def test_failures_at_the_model_are_retried_then_kept(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    down = flexlearn.connect("openai:m@http://127.0.0.1:9/v1", retry=False)
    with Library.open(tmp_path / "lib.flexlib") as lib:
        [id] = queue(lib, 1)
        for attempt in (1, 2):
            summary = await aabsorb(lib, agents=down, max_attempts=3)
            assert (summary.absorbed, summary.retried, summary.remaining) == (0, 1, 1)
            failing = lib.outcome(id)
            assert failing is not None and failing.status == "queued" and failing.attempts == attempt
            assert failing.error and summary.last_error == failing.error
        summary = await aabsorb(lib, agents=down, max_attempts=3)
        assert (summary.failed, summary.remaining) == (1, 0)
        assert lib.outcome(id).status == "failed" and lib.count() == 0  # type: ignore[union-attr]
        # Kept with its error: queued again, it is absorbed once the model answers.
        assert lib.requeue_failed() == 1
        async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
            summary = await aabsorb(lib, agents=agents)
        assert summary.absorbed == 1 and lib.outcome(id).status == "absorbed" and lib.count() > 0  # type: ignore[union-attr]
    await down.aclose()


async def test_two_absorbers_on_one_queue_apply_each_outcome_once(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    path = tmp_path / "lib.flexlib"
    async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
        with Library.open(path) as one, Library.open(path) as two:
            queue(one, 8)
            first, second = await asyncio.gather(aabsorb(one, agents=agents), aabsorb(two, agents=agents))
            # Both read the same 8 before either applied one: each outcome was distilled twice, applied once.
            assert first.absorbed + second.absorbed == 8 and first.taken + second.taken == 8
            assert one.queue_stats()["absorbed"] == 8
    with Library.open(tmp_path / "alone.flexlib") as alone:
        queue(alone, 8)
        with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as blocking:
            absorb(alone, agents=blocking)  # the blocking form
    assert events_by_problem(path) == events_by_problem(tmp_path / "alone.flexlib")


async def test_review_adds_every_lesson_in_quarantine(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    with Library.open(tmp_path / "lib.flexlib") as lib:
        served = lib.add(
            Experience(Zone.WARNING, Level.PATTERN, "sum of two numbers", "Add both numbers digit by digit."),
            reason="seeded",
        )
        queue(lib, 3)
        async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
            summary = await aabsorb(lib, agents=agents, review=True)
        assert summary.absorbed == 3 and summary.actions["merge"] == 0
        learned = [e for e in lib.list() if e.id != served.id]
        assert learned and all(e.status == Status.QUARANTINED for e in learned)
        assert lib.get(served.id) == served  # nothing merged into the entry the library serves
        assert flexlearn.guidance(lib, question(0)).ids == (served.id,)
    assert "updater" not in scripted_server.scripted.roles  # type: ignore[attr-defined]


async def test_the_background_absorber_drains_what_is_queued(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    async def absorbed(lib: Library, n: int) -> None:
        deadline = time.monotonic() + 30
        while lib.queue_stats()["absorbed"] < n:
            assert time.monotonic() < deadline, lib.queue_stats()
            await asyncio.sleep(0.05)

    async with flexlearn.Agents(actor=flexlearn.connect(model_uri(scripted_server))) as agents:
        with Library.open(tmp_path / "lib.flexlib") as lib:
            queue(lib, 2)  # queued before it started: its first pass takes them
            absorber = Absorber(lib, agents, retry_after=60)
            task = asyncio.create_task(absorber.run())
            try:
                await absorbed(lib, 2)
                ids = queue(lib, 3, first=2)
                absorber.wake()  # without it, the next pass would come in 60 s
                await absorbed(lib, 5)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert all(lib.outcome(id).status == "absorbed" for id in ids)  # type: ignore[union-attr]
            assert absorber.total.absorbed == 5
