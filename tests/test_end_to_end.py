"""The whole FLEX loop through the real `flex` CLI in a subprocess, against a scripted model served over HTTP."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from flexlearn.experience import Action, Level, Zone
from flexlearn.library.store import Library
from tests.support.cli import TEST, TRAIN, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI
from tests.support.scripted_flex import parse


def snapshot(path: Path) -> list[tuple]:
    with Library.open(path, create=False) as lib:
        return sorted(
            (e.id, e.zone, e.level, e.title, e.content, e.parent_id, tuple(sorted(e.provenance.problem_ids)))
            for e in lib.list()
        )


def test_learn_then_eval_all_modes(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    test = write_set(tmp_path / "test.jsonl", TEST)
    lib_path = tmp_path / "math.flexlib"

    learned = flex(
        "learn",
        "--task",
        "math",
        "--train",
        str(train),
        "--library",
        str(lib_path),
        "--model",
        model_uri(scripted_server),
        "--concurrency",
        "3",
        "--rollouts",
        "2",
        "--rounds",
        "3",
        "--json",
    )
    summary = json.loads(learned.stdout)["summary"]
    assert summary["solved"] == len(TRAIN)  # every problem solved on the retry after feedback

    with Library.open(lib_path, create=False) as lib:
        stats = lib.stats()
        for zone in Zone:
            for level in Level:
                assert stats["by_zone_level"][zone][level] > 0, (zone, level, stats)
        events = lib.events()
        explained = {ev.experience_id for ev in events if ev.action == Action.ADD and ev.reason.strip()}
        for e in lib.list():
            assert e.id in explained, f"{e.id} has no add event with a reason"
            if e.level == Level.CASE:
                assert e.parent_id is not None and lib.get(e.parent_id).level == Level.PATTERN
            if e.level == Level.PATTERN:
                assert e.parent_id is not None and lib.get(e.parent_id).level == Level.PRINCIPLE
        actions = {ev.action for ev in events}
        assert {Action.ADD, Action.MERGE, Action.DISCARD} <= actions
        assert all(ev.reason for ev in events)

    stats_out = json.loads(flex("library", "stats", str(lib_path), "--json").stdout)
    assert stats_out["by_zone_level"] == stats["by_zone_level"]

    out_dir = tmp_path / "run"
    evaluated = flex(
        "eval",
        "--max-tokens",
        "300",
        "--task",
        "math",
        "--test",
        str(test),
        "--train",
        str(train),
        "--library",
        str(lib_path),
        "--modes",
        "vanilla,icl,agent,flex",
        "--model",
        model_uri(scripted_server),
        "--out",
        str(out_dir),
        "--json",
    )
    printed = json.loads(evaluated.stdout)
    results = {r["mode"]: r for r in printed["results"]}
    assert set(results) == {"vanilla", "icl", "agent", "flex"}
    assert printed["config"]["guide_at"] == "prompt"  # a served model reads its lessons, the paper's way
    assert printed["config"]["agent_rounds"] == 3  # unset, as run: a served model's
    assert all(r["item_seconds"] > 0 for r in printed["results"])  # every item timed, the mode's sum recorded
    assert results["vanilla"]["accuracy"] == 0.0
    assert results["flex"]["accuracy"] == 1.0  # the scripted actor is right only with experience in its prompt
    assert results["agent"]["accuracy"] == 1.0  # ... or with the blind critic's feedback
    assert results["agent"]["calls"] > results["vanilla"]["calls"]
    # Flex against each baseline on the same problems: right on every one that vanilla missed.
    assert set(printed["paired"]) == {"vanilla", "icl", "agent"}
    against_vanilla = printed["paired"]["vanilla"]
    assert (against_vanilla["diff"], against_vanilla["wins"], against_vanilla["n"]) == (1.0, len(TEST), len(TEST))

    items = [json.loads(line) for line in (out_dir / "items.jsonl").read_text().splitlines()]
    flex_items = [i for i in items if i["mode"] == "flex"]
    assert len(flex_items) == len(TEST)
    # The folder refers to the library, with the entries the run retrieved in full; no copy without --snapshot.
    ref = json.loads((out_dir / "library.ref.json").read_text())
    assert not (out_dir / "library.json").exists() and ref["path"] == str(lib_path.resolve())
    assert {e["id"] for e in ref["experiences"]} == {eid for i in items for eid in i["retrieved"]}
    with Library.open(lib_path, create=False) as lib:
        train_ids = {f"train.jsonl:{n}" for n in range(1, len(TRAIN) + 1)}
        for item in flex_items:
            kind = parse(item["question"])[0]
            retrieved = [lib.get(i) for i in item["retrieved"]]
            # An entry learned from a training problem of the same kind reached this actor's prompt.
            learned_here = [e for e in retrieved if kind in e.content and set(e.provenance.problem_ids) & train_ids]
            assert learned_here, item["retrieved"]
            assert any(e.content in item["prompt"] for e in learned_here)
            assert all(e.retrieved > 0 for e in learned_here)
    actor_requests = [r.text for r in scripted_server.requests if "careful problem solver" in r.text]
    assert any("What is the sum of 23 and 41?" in t and "<experience " in t for t in actor_requests)
    capped = [
        r.json.get("max_tokens")
        for r in scripted_server.requests
        if "careful problem solver" in r.text and "What is the sum of 23 and 41?" in r.text
    ]
    assert len(capped) >= 4 and set(capped) == {300}  # at least one actor call per mode, each capped
    icl_items = [i for i in items if i["mode"] == "icl"]
    assert all("Example problem" in i["prompt"] for i in icl_items)


def test_killed_learn_resumes_to_same_library(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    whole, resumed = tmp_path / "whole.flexlib", tmp_path / "resumed.flexlib"
    common = [
        "--task",
        "math",
        "--train",
        str(train),
        "--model",
        model_uri(scripted_server),
        "--concurrency",
        "2",
        "--rollouts",
        "2",
        "--rounds",
        "3",
    ]
    flex("learn", "--library", str(whole), *common)

    scripted_server.scripted.delay = 0.15  # type: ignore[attr-defined]
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flexlearn", "learn", "--library", str(resumed), *common],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if resumed.exists():
            try:
                with sqlite3.connect(resumed, timeout=1) as db:
                    done = db.execute(
                        "SELECT count(*) FROM run_problems WHERE status IN ('solved','unsolved')"
                    ).fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
        if done >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "learn finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= done < len(TRAIN)
    scripted_server.scripted.delay = 0.0  # type: ignore[attr-defined]

    with sqlite3.connect(resumed) as db:
        (run_id,) = db.execute("SELECT run_id FROM runs").fetchone()
    # The run id right after --resume, as a user types it; without --resume it is refused.
    refused = flex("learn", "--library", str(resumed), run_id, *common, check=False)
    assert refused.returncode == 2 and "add --resume" in refused.stderr
    again = flex("learn", "--library", str(resumed), "--resume", run_id, *common, "--json")
    summary = json.loads(again.stdout)["summary"]
    assert summary["resumed"] is True and summary["skipped"] >= 2
    assert summary["solved"] == len(TRAIN)
    assert snapshot(resumed) == snapshot(whole)


def test_bad_input_names_file_and_line(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "What is the sum of 1 and 2?", "answer": "3"}\n{"question": "no answer"}\n')
    lib_path = tmp_path / "lib.flexlib"
    proc = flex(
        "learn",
        "--task",
        "math",
        "--train",
        str(bad),
        "--library",
        str(lib_path),
        "--model",
        model_uri(scripted_server),
        check=False,
    )
    assert proc.returncode == 2
    assert "bad.jsonl:2" in proc.stderr and "Traceback" not in proc.stderr
    assert not lib_path.exists()
    assert not scripted_server.requests


def test_a_missing_library_is_a_clear_error_everywhere(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    test = write_set(tmp_path / "test.jsonl", TEST)
    missing = tmp_path / "nowhere.flexlib"
    model = ["--model", model_uri(scripted_server)]
    for args in (
        ["eval", "--task", "math", "--test", str(test), "--modes", "flex", "--library", str(missing), *model],
        ["solve", "--task", "math", "--library", str(missing), *model, "What is the sum of 1 and 2?"],
        [
            "scaling",
            "--task",
            "math",
            "--library",
            str(missing),
            "--test",
            str(test),
            "--out",
            str(tmp_path / "s"),
            *model,
        ],
        ["library", "stats", str(missing)],
    ):
        proc = flex(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"no library at {missing}" in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert not missing.exists()
    assert not scripted_server.requests
