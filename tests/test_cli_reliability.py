"""The `flex` CLI under failure, through a real subprocess: an unreachable or failing model, arguments and files
that are wrong, signals, credentials in URLs, logs without a terminal. Each ends in a one-line message (never a
traceback), before any model call where it can, and changes no file it refuses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from flexlearn.errors import LibraryError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from tests.support.cli import TEST, TRAIN, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI, FakeResponse
from tests.support.scripted_flex import ScriptedFlex


def start(*args: str) -> subprocess.Popen[str]:
    """`flex ARGS` running in the background, its output captured, as a user's shell would start it in the
    foreground: with SIGINT at its default even where this test process inherited it ignored. A shell that runs the
    suite as a background job without job control (`pytest &` in a script) ignores SIGINT in it, every child inherits
    that, and Python then installs no KeyboardInterrupt handler, so Ctrl-C would not reach `flex` at all (that is
    right for a background job, and it is what made the two SIGINT tests below fail in such runs)."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FLEX_MODEL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "flexlearn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert message in " ".join(proc.stderr.split()), proc.stderr


def test_eval_against_a_failing_model_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    test = write_set(tmp_path / "test.jsonl", TEST * 4)
    with FakeOpenAI(lambda request: FakeResponse(400, json={"error": {"message": "no such model"}})) as server:
        proc = flex(
            "eval",
            "--task",
            "math",
            "--test",
            str(test),
            "--modes",
            "vanilla",
            "--model",
            model_uri(server),
            check=False,
        )
        refused(proc, "all failed at the model, so it looks unreachable")
        assert len(server.requests) < 12


def test_eval_checks_its_arguments_before_any_model_call(tmp_path: Path) -> None:
    test = write_set(tmp_path / "test.jsonl", TEST)
    taken = tmp_path / "results.txt"
    taken.write_text("keep me")
    with FakeOpenAI(ScriptedFlex()) as server:
        base = ("eval", "--task", "math", "--test", str(test), "--model", model_uri(server))
        refused(flex(*base, "--modes", "vanilla", "--out", str(taken), check=False), "is a file; give a folder")
        refused(flex(*base, "--modes", "flex", check=False), "mode 'flex' needs an experience library")
        refused(flex(*base, "--modes", "icl", check=False), "mode 'icl' needs training examples")
        refused(
            flex(*base, "--modes", "vanilla", "--prompt-kind", "bogus", check=False), "must be 'chat' or 'completion'"
        )
        refused(
            flex(*base, "--modes", "vanilla", env_extra={"FLEX_PROMPT_KIND": "bogus"}, check=False),
            "must be 'chat' or 'completion'",
        )
        assert server.requests == []
    assert taken.read_text() == "keep me"


def test_refused_library_commands_change_nothing_on_disk(tmp_path: Path) -> None:
    empty = tmp_path / "empty.flexlib"
    empty.touch()
    refused(flex("library", "stats", str(empty), check=False), "empty, not a flexlearn library")
    assert empty.read_bytes() == b""

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for source in (bad, tmp_path / "missing.json"):
        proc = flex("library", "import", str(tmp_path / "new.flexlib"), str(source), check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
    wrong_shape = tmp_path / "shape.json"
    wrong_shape.write_text(json.dumps({"format": "flexlearn.library", "version": 1, "experiences": [{"zone": 1}]}))
    proc = flex("library", "import", str(tmp_path / "new.flexlib"), str(wrong_shape), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    refused(
        flex("library", "import", str(tmp_path / "no" / "such" / "lib.flexlib"), str(wrong_shape), check=False),
        "such does not exist",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "empty.flexlib", "shape.json"]


def test_a_refused_learn_writes_nothing(tmp_path: Path) -> None:
    """Issue 26's second hole: every refusal of `flex learn` on a new library path left an empty library behind,
    and a bad FLEX_MAX_TOKENS_* was found only once the run had started (leaving it marked running)."""
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    new = tmp_path / "new.flexlib"
    with FakeOpenAI(ScriptedFlex()) as server:
        base = ("learn", "--task", "math", "--train", str(train), "--library", str(new))
        model = ("--model", model_uri(server))
        refusals = [
            (("--model", "nosuch:model"), {}, "unknown model"),
            ((*model, "--retriever", "nosuch"), {}, "unknown retriever 'nosuch'"),
            ((*model, "--prompt-kind", "bogus"), {}, "must be 'chat' or 'completion'"),
            (model, {"FLEX_MAX_TOKENS_ACTOR": "abc"}, "FLEX_MAX_TOKENS_ACTOR must be a positive whole number"),
            ((*model, "--resume"), {}, "no library at"),
            ((*model, "--resume", "--run", "learn-nosuch"), {}, "no library at"),
        ]
        for extra, env, message in refusals:
            refused(flex(*base, *extra, env_extra=env, check=False), message)
            assert not new.exists(), extra
        assert server.requests == []

        # On an existing library, a bad setting refuses before a run is begun.
        Library.open(new).close()
        refused(flex(*base, *model, env_extra={"FLEX_MAX_TOKENS_ACTOR": "abc"}, check=False), "FLEX_MAX_TOKENS_ACTOR")
        with Library.open(new, create=False) as lib:
            assert lib.runs() == []
        assert server.requests == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.flexlib", "train.jsonl"]


def test_import_quarantines_and_review_approves(tmp_path: Path) -> None:
    export = tmp_path / "shared.json"
    entry = {"id": "E1", "zone": "golden", "level": "pattern", "title": "t", "content": "Add the numbers."}
    export.write_text(json.dumps({"format": "flexlearn.library", "version": 1, "experiences": [entry]}))
    lib = tmp_path / "lib.flexlib"
    proc = flex("library", "import", str(lib), str(export))
    assert "1 entries are in quarantine" in proc.stdout
    assert "E1" in flex("library", "review", str(lib)).stdout
    assert flex("library", "search", str(lib), "numbers").stdout.strip() == "no match"
    flex("library", "review", str(lib), "--approve", "all")
    assert "E1" in flex("library", "search", str(lib), "numbers").stdout


def test_sigterm_stops_learn_like_ctrl_c_and_says_how_to_resume(tmp_path: Path) -> None:
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    lib = tmp_path / "lib.flexlib"
    scripted = ScriptedFlex()
    with FakeOpenAI(lambda request: _slow(scripted, request)) as server:
        proc = start(
            "learn",
            "--task",
            "math",
            "--train",
            str(train),
            "--library",
            str(lib),
            "--model",
            model_uri(server),
            "--concurrency",
            "1",
        )
        deadline = time.monotonic() + 60
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated (SIGTERM)" in stderr and "--resume" in stderr and "Traceback" not in stderr
    with Library.open(lib, create=False) as opened:
        assert [r.status for r in opened.runs()] == ["running"]


def test_a_signal_during_a_sandboxed_tool_step_ends_with_its_one_line(tmp_path: Path) -> None:
    """Issue 26's fourth hole: SIGTERM or SIGINT while a tool step ran in the sandbox printed the clean message,
    then "_GatheringFuture exception was never retrieved" and a CancelledError traceback."""
    for sig, said in ((signal.SIGTERM, "terminated (SIGTERM)"), (signal.SIGINT, "interrupted")):
        with FakeOpenAI(
            lambda request: "```python\nimport time\nprint('start', flush=True)\ntime.sleep(60)\n```"
        ) as server:
            proc = start("solve", "What is 6*7?", "--task", "math", "--tools", "python", "--model", model_uri(server))
            deadline = time.monotonic() + 60
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.5)  # the block is running in the sandbox now
            proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, stderr
        assert said in stderr, stderr
        assert "Traceback" not in stderr and "never retrieved" not in stderr and "CancelledError" not in stderr, stderr


def test_a_write_ahead_log_removed_mid_run_ends_in_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    """Issue 26's fifth hole: deleting the library's -wal file during `flex learn` gave a 60-line sqlite3 traceback
    and the run vanished from `flex library runs`."""
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    lib = tmp_path / "lib.flexlib"
    scripted = ScriptedFlex()
    base = ["learn", "--task", "math", "--train", str(train), "--library", str(lib), "--concurrency", "1"]
    with FakeOpenAI(lambda request: _slow(scripted, request)) as server:
        proc = start(*base, "--model", model_uri(server))
        wal = lib.with_name(lib.name + "-wal")
        deadline = time.monotonic() + 60
        while len(server.requests) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        wal.unlink()
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode == 0:
            # The run outlived the loss: each problem's writes had reached the file, and SQLite went on writing to
            # the log it held open. The library must then be whole, its run finished.
            with Library.open(lib, create=False) as opened:
                assert opened._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                assert [r.status for r in opened.runs()] == ["done"] and opened.count() > 0
            return
        assert proc.returncode == 2, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 3, stderr
        assert "--resume" in stderr, stderr
        listed = flex("library", "runs", str(lib))
        assert "learn-" in listed.stdout, listed.stdout
        again = flex(*base, "--model", model_uri(server), "--resume")
        assert "resum" in (again.stdout + again.stderr).lower()


def test_a_damaged_library_file_is_one_line(tmp_path: Path) -> None:
    lib = tmp_path / "lib.flexlib"
    with Library.open(lib) as opened:
        for i in range(100):
            opened.add(Experience(Zone.GOLDEN, Level.PATTERN, f"t{i}", f"lesson number {i} " * 20), reason="test")
    data = bytearray(lib.read_bytes())
    for offset in range(8192, len(data) - 4096, 4096):
        data[offset + 100 : offset + 400] = b"\xff" * 300
    lib.write_bytes(bytes(data))
    for command in (("stats",), ("show",), ("search", "lesson")):
        refused(flex("library", command[0], str(lib), *command[1:], check=False), "the library file is damaged")


def _demo(out: Path, server: FakeOpenAI) -> subprocess.Popen[str]:
    sizes = ["--train-size", "3", "--test-size", "3", "--rollouts", "1", "--rounds", "1"]
    return start("demo", "--model", model_uri(server), *sizes, "--out", str(out), "--json")


def _wait_for(condition, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), "timed out"


def test_an_interrupted_demo_continues_where_it_stopped(tmp_path: Path) -> None:
    """Issue 27: `flex demo` said "run the same command again" after Ctrl-C, then started over in a new folder."""
    out = tmp_path / "demo"
    scripted = ScriptedFlex(delay=0.2)
    with FakeOpenAI(scripted) as server:
        # Interrupted while learning: one problem done.
        proc = _demo(out, server)

        def learned() -> bool:
            libs = list(out.glob("run-*/library.flexlib"))
            try:
                with Library.open(libs[0], read_only=True) as lib:
                    return any(r.solved + r.unsolved >= 1 for r in lib.runs())
            except (IndexError, LibraryError):
                return False

        _wait_for(learned)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "run the same command again" in " ".join(stderr.split())
        # Run again, interrupted while evaluating: learning continued its run, two items done.
        proc = _demo(out, server)
        items = lambda: sum(len(p.read_text().splitlines()) for p in out.glob("run-*/items-done.jsonl"))  # noqa: E731
        _wait_for(lambda: items() >= 2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "continuing the unfinished demo in" in " ".join(stderr.split()), stderr
        kept = items()
        # Run again to the end, in the same folder, asking nothing twice.
        scripted.delay = 0.0
        asked = len(scripted.roles)
        proc = _demo(out, server)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        again = scripted.roles[asked:]
    [run] = list(out.glob("run-*"))
    data = json.loads(stdout)
    assert {r["mode"]: r["n"] for r in data["results"]} == {"vanilla": 3, "icl": 3, "agent": 3, "flex": 3}
    # Flex is paired with each baseline on all three problems, those finished before the interruption included.
    assert {mode: row["n"] for mode, row in data["paired"].items()} == {"vanilla": 3, "icl": 3, "agent": 3}
    with Library.open(run / "library.flexlib", read_only=True) as lib:
        [learned_run] = lib.runs("learn")
        assert learned_run.status == "done" and learned_run.solved + learned_run.unsolved == 3
    # The last invocation learned nothing again and asked only for the items not kept (4 modes x 3 problems; an
    # agent item takes at most 3 calls, the others 1).
    assert not {"distiller", "updater", "critic"} & set(again)
    assert 0 < len(again) <= 3 * (12 - kept) and kept >= 2
    assert json.loads((run / "eval-state.json").read_text())["finished"] is True
    # A finished demo is not continued: the next one starts a folder of its own.
    with FakeOpenAI(ScriptedFlex()) as server:
        proc = _demo(out, server)
        proc.communicate(timeout=120)
    assert len(list(out.glob("run-*"))) == 2


def _slow(scripted: ScriptedFlex, request):  # type: ignore[no-untyped-def]
    time.sleep(0.3)
    return scripted(request)


def test_credentials_in_the_model_url_appear_nowhere(tmp_path: Path) -> None:
    train = write_set(tmp_path / "train.jsonl", TRAIN[:2])
    test = write_set(tmp_path / "test.jsonl", TEST)
    lib = tmp_path / "lib.flexlib"
    out = tmp_path / "run"
    with FakeOpenAI(ScriptedFlex()) as server:
        uri = model_uri(server).replace("http://", "http://user:SECRETKEY@")
        learned = flex(
            "learn",
            "--task",
            "math",
            "--train",
            str(train),
            "--library",
            str(lib),
            "--model",
            uri,
            "--rollouts",
            "1",
            "--rounds",
            "1",
        )
        evaluated = flex(
            "eval",
            "--task",
            "math",
            "--test",
            str(test),
            "--library",
            str(lib),
            "--modes",
            "vanilla,flex",
            "--model",
            uri,
            "--out",
            str(out),
        )
        flex("library", "export", str(lib), str(tmp_path / "export.json"))
    texts = [learned.stdout, learned.stderr, evaluated.stdout, evaluated.stderr, lib.read_bytes().decode("latin-1")]
    texts += [p.read_text() for p in [*out.iterdir(), tmp_path / "export.json"]]
    assert all("SECRETKEY" not in text for text in texts)


def test_without_a_terminal_progress_is_printed_as_plain_lines(tmp_path: Path) -> None:
    test = write_set(tmp_path / "test.jsonl", TEST)
    with FakeOpenAI(lambda request: _slow(ScriptedFlex(), request)) as server:
        proc = flex(
            "eval",
            "--task",
            "math",
            "--test",
            str(test),
            "--modes",
            "vanilla",
            "--model",
            model_uri(server),
            "--concurrency",
            "1",
            env_extra={"FLEX_PROGRESS_INTERVAL": "0.1"},
        )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("eval ")]
    assert len(lines) >= 3, proc.stderr
    assert lines[-1].startswith("eval 3/3 (100%)  elapsed ") and "tok" in lines[-1]
    assert any("left ~" in line for line in lines)


def test_learning_progress_moves_within_a_problem(tmp_path: Path) -> None:
    """Issue 27: with a slow model, learning's progress showed `0 tok` for minutes, until a problem was done. The
    calls and tokens are shown as each call finishes."""
    train = write_set(tmp_path / "train.jsonl", TRAIN[:1])
    with FakeOpenAI(lambda request: _slow(ScriptedFlex(), request)) as server:
        proc = flex(
            "learn",
            "--task",
            "math",
            "--train",
            str(train),
            "--library",
            str(tmp_path / "lib.flexlib"),
            "--model",
            model_uri(server),
            env_extra={"FLEX_PROGRESS_INTERVAL": "0.1"},
        )
    before_done = [line for line in proc.stderr.splitlines() if line.startswith("learn 0/1")]
    counts = [int(m.group(1)) for line in before_done if (m := re.search(r"(\d+) calls", line))]
    assert counts and max(counts) >= 1, proc.stderr


def test_an_interrupted_eval_continues_from_the_items_it_finished(tmp_path: Path) -> None:
    """`flex eval --out DIR` keeps each item as it finishes: run again after an interruption, it evaluates only
    the rest, with the same results; with other settings it starts afresh and says what it dropped."""
    test = write_set(tmp_path / "test.jsonl", TEST)
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    out = tmp_path / "run"
    state, journal = out / "eval-state.json", out / "items-done.jsonl"

    def interrupt_after(kept: int) -> None:
        lines = journal.read_text().splitlines()
        journal.write_text("\n".join(lines[:kept]) + "\n" + lines[kept][:25])  # the next item cut mid-line
        key = json.loads(state.read_text())["key"]
        state.write_text(json.dumps({"key": key, "finished": False}))

    with FakeOpenAI(ScriptedFlex()) as server:
        base = ("eval", "--task", "math", "--test", str(test), "--train", str(train), "--modes", "vanilla,icl")
        run = (*base, "--model", model_uri(server), "--out", str(out), "--json")
        first = json.loads(flex(*run).stdout)
        calls = len(server.requests_to("/v1/chat/completions"))
        assert calls == 6 and json.loads(state.read_text())["finished"] is True
        assert len(journal.read_text().splitlines()) == 6

        interrupt_after(4)
        proc = flex(*run)
        assert "continuing the unfinished evaluation" in proc.stderr and "4 items kept" in proc.stderr
        assert len(server.requests_to("/v1/chat/completions")) == calls + 2
        again = json.loads(proc.stdout)
        assert [(r["mode"], r["correct"], r["n"]) for r in again["results"]] == [
            (r["mode"], r["correct"], r["n"]) for r in first["results"]
        ]
        assert json.loads(state.read_text())["finished"] is True

        # A finished run is not continued: the same command evaluates everything again.
        flex(*run)
        assert len(server.requests_to("/v1/chat/completions")) == calls + 8

        interrupt_after(3)
        proc = flex(*run, "--seed", "1")  # another setting: nothing kept
        assert "had other settings: 3 items dropped" in proc.stderr
        assert len(server.requests_to("/v1/chat/completions")) == calls + 14
