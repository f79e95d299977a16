"""`flex library queue`: what the outcome queue holds, and draining it with `--absorb` through the real CLI in a
subprocess against the scripted model server; SIGKILLed at random moments and run again, it absorbs every outcome
exactly once."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from pathlib import Path

import flexlearn
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from tests.support.cli import flex, model_uri
from tests.support.fake_openai import FakeOpenAI
from tests.support.scripted_flex import ScriptedFlex
from tests.test_cli_reliability import start

KINDS = ("sum", "product", "difference")


def fill(path: Path, n: int) -> str:
    """A library with one served lesson and `n` outcomes queued that were shown it (every third one right);
    the lesson's id."""
    with Library.open(path) as lib:
        seed = lib.add(Experience(Zone.GOLDEN, Level.PATTERN, "arithmetic", "Check the result once."), reason="seed")
        for i in range(n):
            question = f"What is the {KINDS[i % 3]} of {i + 20} and {i + 7}?"
            flexlearn.record(lib, question, "A quick guess.", correct=i % 3 == 0, guidance=[seed.id], wait=False)
    return seed.id


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        rows = db.execute("SELECT status, count(*) FROM outcomes GROUP BY status").fetchall()
    return {"queued": 0, "absorbed": 0, "failed": 0, **dict(rows)}


def by_problem(path: Path) -> dict[str, int]:
    """Events per problem: one per candidate the distiller wrote for it, so an outcome applied twice shows."""
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT problem_id, count(*) FROM events GROUP BY problem_id").fetchall())


def test_queue_shows_what_waits_and_absorbs_it(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    path = tmp_path / "lib.flexlib"
    fill(path, 3)
    with Library.open(path) as lib:
        broken = flexlearn.record(lib, "What is 1 + 1?", "3", correct=False, wait=False).id  # type: ignore[union-attr]
        for _ in range(3):
            lib.mark_failed(broken, "model unreachable")
    shown = flex("library", "queue", str(path))
    text = " ".join(shown.stdout.split())
    assert "3 queued, 0 absorbed, 1 failed; oldest queued" in text
    assert f"{broken} (failed, 3 attempts): model unreachable" in text
    assert f"absorb them: flex library queue {path} --absorb --model URI" in text
    data = json.loads(flex("library", "queue", str(path), "--json").stdout)
    assert (data["queued"], data["absorbed"], data["failed"]) == (3, 0, 1)
    assert not scripted_server.requests  # showing the queue calls no model

    absorbed = flex("library", "queue", str(path), "--absorb", "--model", model_uri(scripted_server))
    text = " ".join(absorbed.stdout.split())
    assert "absorbed 3 outcomes in" in text and "0 queued, 3 absorbed, 1 failed" in text, text
    again = flex(
        "library", "queue", str(path), "--retry-failed", "--absorb", "-m", model_uri(scripted_server), "--json"
    )
    data = json.loads(again.stdout)
    assert data["requeued"] == 1 and data["absorb"]["absorbed"] == 1
    assert (data["queued"], data["absorbed"], data["failed"]) == (0, 4, 0)
    with Library.open(path, read_only=True) as lib:
        assert len(lib.runs("record")) == 4 and all(r.status == "done" for r in lib.runs("record"))

    refused = flex("library", "queue", str(path), "--review", check=False)
    assert refused.returncode == 2 and "--review, --limit and --gate are for --absorb" in refused.stderr


def test_sigkill_at_random_moments_loses_no_outcome_and_applies_none_twice(tmp_path: Path) -> None:
    n, seed = 24, random.randrange(1_000_000)
    rng = random.Random(seed)
    path, reference = tmp_path / "killed.flexlib", tmp_path / "reference.flexlib"
    lesson = fill(path, n)
    fill(reference, n)
    with FakeOpenAI(ScriptedFlex(delay=0.1)) as server:
        uri = model_uri(server)
        with flexlearn.Agents(actor=flexlearn.connect(uri)) as agents, Library.open(reference) as lib:
            assert flexlearn.loop.absorber.absorb(lib, agents=agents).absorbed == n
        kills = 0
        for _ in range(3):
            before = counts(path)["absorbed"]
            proc = start("library", "queue", str(path), "--absorb", "--model", uri, "--batch-size", "2")
            deadline = time.monotonic() + 60
            while counts(path)["absorbed"] == before and proc.poll() is None:
                assert time.monotonic() < deadline, f"no progress (seed {seed})"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere in a batch: a model call, an apply, a commit
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
        assert kills >= 2 and counts(path)["absorbed"] < n, f"the runs were not cut short (seed {seed})"
        final = flex("library", "queue", str(path), "--absorb", "--model", uri, "--json")
    assert json.loads(final.stdout)["absorb"]["failed"] == 0
    assert counts(path) == {"queued": 0, "absorbed": n, "failed": 0}, f"seed {seed}"
    assert by_problem(path) == by_problem(reference), f"seed {seed}"
    with Library.open(path, read_only=True) as killed, Library.open(reference, read_only=True) as ref:
        runs = killed.runs("record")
        assert len(runs) == n and all(r.status == "done" and r.unsolved + r.solved == 1 for r in runs)
        shown = killed.get(lesson)
        assert (shown.retrieved, shown.helped, shown.hurt) == (n, n // 3, n - n // 3), f"seed {seed}"
        again = ref.get(lesson)
        assert (again.retrieved, again.helped, again.hurt) == (shown.retrieved, shown.helped, shown.hurt)
