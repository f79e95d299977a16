"""The `flex` commands on a library in PostgreSQL (the real throwaway server of tests/support/postgres.py), through
the real CLI in subprocesses against the scripted model server: two learners from different working directories
writing one library at once while it is exported over and over, one of them SIGKILLed and resumed; eval, report,
solve, scaling and inherit on a server library; and the one-line errors of a server that is not there."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Level
from flexlearn.library.backend import ServerLost
from flexlearn.library.backend.postgres import failure, redact
from flexlearn.library.store import Library
from tests.support.cli import TEST, TRAIN, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI
from tests.support.postgres import PostgresServer

# A second training set with other numbers: each problem's worked case ("The sum of 31 and 14 came out right...")
# names it, so a case tells which problem, of which set, it was learned from.
TRAIN_B = [
    ("sum", 31, 14),
    ("product", 7, 8),
    ("difference", 64, 9),
    ("sum", 48, 27),
    ("product", 12, 5),
    ("difference", 81, 36),
]
# Trust authentication ignores a password, so one can ride in every URL here, to show it is printed nowhere.
SECRET = "s3cret-pw"


def with_password(url: str) -> str:
    return url.replace("postgresql://flex@", f"postgresql://flex:{SECRET}@", 1)


def env() -> dict[str, str]:
    found = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    found.pop("FLEX_MODEL", None)
    return found


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """`flex ARGS` running in the background in `cwd`, as a user's shell in that folder would start it."""
    return subprocess.Popen(
        [sys.executable, "-m", "flexlearn", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def finish(proc: subprocess.Popen[str], what: str) -> str:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{stdout}\n{stderr}"
    return stdout + stderr


def learn_args(library: str, server: FakeOpenAI, *extra: str) -> list[str]:
    # A relative training file: each learner reads the train.jsonl of its own working directory. Both files give
    # their problems the same ids (train.jsonl:1 ...), so only their content tells the two runs apart.
    return [
        "learn", "--task", "math", "--train", "train.jsonl", "--library", library, "--model", model_uri(server),
        "--concurrency", "2", *extra,
    ]  # fmt: skip


def wait_for(condition: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def runs_in(target: str | Path) -> list[Any]:
    """The library's learn runs; none while it is not a library yet."""
    try:
        with Library.open_read_only(target) as lib:
            return lib.runs("learn")
    except LibraryError:
        return []


def recorded(target: str | Path, run_id: str) -> dict[str, str]:
    with Library.open_read_only(target) as lib:
        return lib.problem_status(run_id)


class Exporter(threading.Thread):
    """`flex library export` of one library, again and again, until stopped; every export is kept."""

    def __init__(self, library: str, folder: Path) -> None:
        super().__init__(daemon=True)
        self.library, self.folder = library, folder
        self.stop = threading.Event()
        self.exports: list[Path] = []
        self.failures: list[str] = []

    def run(self) -> None:
        self.folder.mkdir()
        while not self.stop.is_set():
            dest = self.folder / f"export-{len(self.exports):03d}.json"
            proc = flex("library", "export", self.library, str(dest), check=False)
            if proc.returncode != 0:
                self.failures.append(proc.stdout + proc.stderr)
            else:
                self.exports.append(dest)


def check_export(data: dict[str, Any]) -> None:
    """One export is one moment of the library: its entries are those its log added, with stats that count them,
    and no two share a text."""
    experiences = data["experiences"]
    assert data["stats"]["total"] == len(experiences)
    added = {ev["experience_id"] for ev in data["events"] if ev["action"] == "add"}
    assert {e["id"] for e in experiences} <= added
    contents = Counter(e["content"] for e in experiences)
    assert not [text for text, n in contents.items() if n > 1], contents


def two_learners(
    library: str, server: FakeOpenAI, folders: tuple[Path, Path], *, kill: bool, exporter: Exporter | None = None
) -> tuple[str, str, list[str], int]:
    """Learner A on TRAIN in folders[0], then, once A's run is listed, learner B on TRAIN_B in folders[1] (and the
    `exporter`), into one library at once. With `kill`, A is SIGKILLed once it has finished two problems, and `flex
    learn ... --resume` started in its folder while B still learns. Returns A's and B's run ids and what the
    commands printed, and how many problems A had finished when it was killed."""
    a, b = folders
    write_set(a / "train.jsonl", TRAIN)
    write_set(b / "train.jsonl", TRAIN_B)
    printed, killed_at = [], 0
    learner_a = start(*learn_args(library, server), cwd=a)
    [run_a] = [r.run_id for r in wait_for(lambda: runs_in(library), "A's run")]
    learner_b = start(*learn_args(library, server), cwd=b)
    if exporter is not None:
        exporter.start()
    if kill:
        wait_for(lambda: len(recorded(library, run_a)) >= 2, "A to finish two problems")
        learner_a.send_signal(signal.SIGKILL)
        learner_a.communicate(timeout=60)
        assert learner_a.returncode == -signal.SIGKILL
        killed_at = len(recorded(library, run_a))
        assert killed_at < len(TRAIN), "A finished before it was killed: slow the model down"
        assert learner_b.poll() is None, "B finished before A was resumed: slow the model down"
        learner_a = start(*learn_args(library, server, "--resume"), cwd=a)
    printed.append(finish(learner_a, "learner A"))
    printed.append(finish(learner_b, "learner B"))
    [run_b] = [r.run_id for r in runs_in(library) if r.run_id != run_a]
    if kill:
        assert f"run {run_a} (resumed)" in printed[0], printed[0]
    return run_a, run_b, printed, killed_at


def learned(target: str | Path, runs: dict[str, tuple[str, list[tuple[str, int, int]]]]) -> dict[str, Any]:
    """What a library learned, in terms that do not depend on the order two learners took turns in: each run's
    problems and their outcome, and the worked cases, by the run and problem whose add logged them."""
    with Library.open_read_only(target) as lib:
        entries = {e.id: e for e in lib.list()}
        contents = Counter(e.content for e in entries.values())
        assert not [text for text, n in contents.items() if n > 1], f"two entries with one text: {contents}"
        statuses = {}
        cases: Counter[tuple[str, str, str, str]] = Counter()
        for label, (run_id, items) in runs.items():
            status = lib.problem_status(run_id)
            assert lib.run_status(run_id) == "done"
            assert sorted(status) == [f"train.jsonl:{i}" for i in range(1, len(items) + 1)]
            statuses[label] = status
            for ev in lib.events(run_id=run_id):
                if ev.action != Action.ADD or ev.after is None or ev.after["level"] != Level.CASE:
                    continue
                kind, a, b = items[int(str(ev.problem_id).split(":")[1]) - 1]
                # The case was learned from this run's own problem, not from the other set's under the same id.
                assert f"{kind} of {a} and {b}" in ev.after["content"], (label, ev.problem_id, ev.after["content"])
                cases[(label, str(ev.problem_id), ev.after["zone"], ev.after["content"])] += 1
        assert all(n == 1 for n in cases.values()), f"a case learned twice: {cases}"
        live = {(e.zone, e.content) for e in entries.values() if e.level == Level.CASE}
        assert {(zone, content) for _, _, zone, content in cases} == live
    return {"statuses": statuses, "cases": sorted(cases), "total": len(entries)}


def test_two_learners_one_server_library_a_kill_and_a_resume_lose_and_double_nothing(
    postgres_server: PostgresServer, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    # Slow enough that A is still under way when it is killed, and B when A is resumed.
    scripted_server.scripted.delay = 0.15  # type: ignore[attr-defined]
    url = with_password(postgres_server.new_database())
    folders = (tmp_path / "host-a", tmp_path / "host-b")
    for folder in folders:
        folder.mkdir()
    exporter = Exporter(url, tmp_path / "exports")
    try:
        run_a, run_b, printed, killed_at = two_learners(url, scripted_server, folders, kill=True, exporter=exporter)
    finally:
        exporter.stop.set()
        if exporter.is_alive():
            exporter.join(timeout=120)
    assert not exporter.failures, exporter.failures
    assert len(exporter.exports) >= 2, "the export loop barely ran"
    for export in exporter.exports:
        check_export(json.loads(export.read_text()))
    on_server = learned(url, {"A": (run_a, TRAIN), "B": (run_b, TRAIN_B)})

    # The same two runs into a file, at once, none killed.
    scripted_server.scripted.delay = 0.0  # type: ignore[attr-defined]
    file_folders = (tmp_path / "file-a", tmp_path / "file-b")
    for folder in file_folders:
        folder.mkdir()
    lib_file = tmp_path / "same.flexlib"
    file_a, file_b, _, _ = two_learners(str(lib_file), scripted_server, file_folders, kill=False)
    in_file = learned(lib_file, {"A": (file_a, TRAIN), "B": (file_b, TRAIN_B)})
    assert on_server["statuses"] == in_file["statuses"]
    assert on_server["cases"] == in_file["cases"]
    print(
        f"A killed after {killed_at}/{len(TRAIN)} problems and resumed while B learned; "
        f"{len(exporter.exports)} exports taken meanwhile, each one moment; server: {on_server['total']} entries, "
        f"{len(on_server['cases'])} cases, each learned once; file: {in_file['total']} entries, same cases"
    )

    # The server's export is the export of its copy in a file, exported the same way.
    flex("library", "export", url, str(tmp_path / "server.json"))
    copied = tmp_path / "copy.flexlib"
    said = flex("library", "copy", url, str(copied))
    flex("library", "export", str(copied), str(tmp_path / "copy.json"))
    server_export = json.loads((tmp_path / "server.json").read_text())
    copy_export = json.loads((tmp_path / "copy.json").read_text())
    for data in (server_export, copy_export):
        data.pop("exported_at")
    assert server_export == copy_export
    check_export(server_export)

    # Nothing was made in the learners' folders (no library file, no index, no `postgresql:` folder of a mangled
    # URL), and the password is in no output and no file.
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["train.jsonl"]
    for text in [*printed, said.stdout, said.stderr]:
        assert SECRET not in text and "Traceback" not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            assert SECRET not in path.read_text(errors="replace"), path


def test_eval_report_solve_scaling_and_inherit_on_a_server_library(
    postgres_server: PostgresServer, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    url = with_password(postgres_server.new_database())
    location = redact(url)
    model = model_uri(scripted_server)
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    test = write_set(tmp_path / "test.jsonl", TEST)
    printed = [flex("learn", "--task", "math", "--train", str(train), "--library", url, "--model", model)]

    # No --task: the task is the one the server's library was learned on.
    run = tmp_path / "eval-run"
    evaluated = flex(
        "eval", "--test", str(test), "--library", url, "--modes", "vanilla,flex", "--model", model, "--out", str(run),
        "--json",
    )  # fmt: skip
    printed.append(evaluated)
    assert f"task: math (the task {location} was learned on" in evaluated.stderr
    accuracy = {r["mode"]: r["accuracy"] for r in json.loads(evaluated.stdout)["results"]}
    assert accuracy == {"vanilla": 0.0, "flex": 1.0}  # the scripted actor is right only with experience shown
    results = json.loads((run / "results.json").read_text())
    ref = json.loads((run / "library.ref.json").read_text())
    assert results["library"] == location and ref["path"] == location
    assert ref["experiences"] and not ref["missing"]
    printed.append(flex("report", str(run)))
    page = (run / "report.html").read_text().replace("<wbr>", "")  # the page lets a long path break at each /
    assert page.count(location) == 2 and "Experience library" in page  # in the run's facts and the library section

    with Library.open_read_only(url) as lib:
        retrieved_before = sum(e.retrieved for e in lib.list())
    question = "What is the sum of 23 and 41?"
    solved = flex("solve", "--library", url, "--model", model, "--answer", "64", "--show-guidance", question)
    printed.append(solved)
    assert "answer: 64 (correct)" in solved.stdout
    with Library.open_read_only(url) as lib:
        assert sum(e.retrieved for e in lib.list()) > retrieved_before  # its usage counters, written on the server

    scaling = tmp_path / "scaling"
    args = [
        "scaling", "--library", url, "--test", str(test), "--sizes", "0,all", "--limit", "1", "--model", model,
        "--out", str(scaling),
    ]  # fmt: skip
    printed.append(flex(*args))
    points = json.loads((scaling / "scaling.json").read_text())
    assert points["library"] == location and [p["size"] for p in points["points"]] == [0, len(TRAIN)]
    inherit = tmp_path / "inherit"
    args = [
        "inherit", "--library", url, "--own-library", url, "--test", str(test), "--limit", "1", "--model", model,
        "--out", str(inherit),
    ]  # fmt: skip
    printed.append(flex(*args))
    rows = json.loads((inherit / "inherit.json").read_text())
    assert rows["inherited"] == location and [r["library"] for r in rows["rows"]] == [None, location, location]

    for proc in printed:
        assert SECRET not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2 with one line saying `message`, no traceback, no password."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert SECRET not in proc.stdout + proc.stderr


def in_folder(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flexlearn", *args], cwd=folder, capture_output=True, text=True, env=env(), timeout=300
    )


def test_a_server_that_is_not_there_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it once the probe is closed
    url = f"postgresql://flex:{SECRET}@127.0.0.1:{port}/flexlib"
    said = f"cannot reach the PostgreSQL server of postgresql://flex:***@127.0.0.1:{port}/flexlib (Connection refused)"
    write_set(tmp_path / "train.jsonl", TRAIN)
    write_set(tmp_path / "test.jsonl", TEST)
    model = "openai:none@http://127.0.0.1:9/v1"
    for args in (
        ("library", "stats", url),
        ("learn", "--task", "math", "--train", "train.jsonl", "--library", url, "--model", model),
        ("learn", "--train", "train.jsonl", "--library", url, "--model", model),  # the task read from the library
        ("eval", "--task", "math", "--test", "test.jsonl", "--library", url, "--modes", "flex", "--model", model),
        ("solve", "--task", "math", "--library", url, "--model", model, "What is 2 and 2?"),
        ("scaling", "--task", "math", "--library", url, "--test", "test.jsonl", "--out", "scaling", "--model", model),
    ):
        refused(in_folder(tmp_path, *args), said)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.jsonl", "train.jsonl"]


def test_a_missing_database_a_refused_login_and_an_empty_database_say_so(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    missing = with_password(postgres_server.url("no_such_db"))
    refused(flex("library", "stats", missing, check=False), "the server has no database 'no_such_db'; create it first")
    stranger = postgres_server.url("postgres").replace("//flex@", f"//stranger:{SECRET}@")
    refused(flex("library", "stats", stranger, check=False), 'refused the login (role "stranger" does not exist)')
    login = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  password authentication '
        'failed for user "flex"'
    )
    assert failure(login, "postgresql://flex:***@10.0.0.5/lib", opening=True) == (
        "cannot open library postgresql://flex:***@10.0.0.5/lib: the server refused the login (password "
        'authentication failed for user "flex"); check the user and password'
    )
    # An empty database is no library yet: without --task, learn asks for one rather than calling it "not a library".
    empty = with_password(postgres_server.new_database())
    write_set(tmp_path / "train.jsonl", TRAIN)
    refused(
        flex("learn", "--train", str(tmp_path / "train.jsonl"), "--library", empty, check=False),
        f"--task is required: {redact(empty)} records no task to infer it from",
    )


def test_a_server_lost_mid_learn_is_one_line_and_the_run_resumes(
    postgres_server: PostgresServer, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    scripted_server.scripted.delay = 0.15  # type: ignore[attr-defined]
    url = with_password(postgres_server.new_database())
    write_set(tmp_path / "train.jsonl", TRAIN)
    learner = start(*learn_args(url, scripted_server), cwd=tmp_path)
    [run] = [r.run_id for r in wait_for(lambda: runs_in(url), "the run")]
    wait_for(lambda: recorded(url, run), "a finished problem")
    # The connection ends as when the server restarts: an administrator terminates the learner's backend.
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'flexlearn'"
            " AND datname = %s",
            (url.rsplit("/", 1)[1],),
        )
    _, stderr = learner.communicate(timeout=120)
    assert learner.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr and SECRET not in stderr, stderr
    assert f"lost the PostgreSQL server of {redact(url)}" in lines[0], lines[0]
    assert "work committed before it is kept; to continue, run the same command with --resume" in lines[0]
    scripted_server.scripted.delay = 0.0  # type: ignore[attr-defined]
    again = in_folder(tmp_path, *learn_args(url, scripted_server, "--resume"))
    assert again.returncode == 0 and f"run {run} (resumed)" in again.stdout, again.stdout + again.stderr
    with Library.open_read_only(url) as lib:
        assert lib.run_status(run) == "done" and len(lib.problem_status(run)) == len(TRAIN)


def test_a_lost_connection_is_server_lost_naming_the_library(postgres_server: PostgresServer) -> None:
    url = with_password(postgres_server.new_database())
    with Library.open(url) as lib:
        [pid] = lib._conn.execute("SELECT pg_backend_pid()").fetchone()
        with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(ServerLost) as lost:
            lib.stats()
    message = str(lost.value)
    assert message.startswith(f"lost the PostgreSQL server of {redact(url)} (") and "\n" not in message
    assert SECRET not in message


async def test_mcp_serves_and_learns_into_a_server_library(
    postgres_server: PostgresServer, scripted_server: FakeOpenAI, tmp_path: Path
) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    url = with_password(postgres_server.new_database())
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    flex("learn", "--task", "math", "--train", str(train), "--library", url, "--model", model_uri(scripted_server))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "flexlearn", "mcp", "--library", url, "--model", model_uri(scripted_server)],
        env=env(),
        cwd=tmp_path,
    )
    errlog = tmp_path / "server-stderr.txt"
    with errlog.open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr)) as client:
            guidance = await client.call_tool("guidance", {"question": "What is the sum of 23 and 41?"})
            assert not guidance.is_error and guidance.structured_content["ids"]  # type: ignore[index]
            outcome = {"question": "What is the product of 11 and 13?", "attempt": "A guess: 144.", "correct": False}
            recorded = await client.call_tool("record", outcome)
            assert not recorded.is_error, recorded.content
            deadline = time.monotonic() + 60
            while True:
                stats = (await client.call_tool("stats", {})).structured_content
                if stats is not None and stats["queue"]["absorbed"] >= 1:
                    break
                assert time.monotonic() < deadline, stats
                await asyncio.sleep(0.1)
    logged = errlog.read_text()
    assert f"serving {redact(url)} at stdio" in logged and SECRET not in logged and "Traceback" not in logged, logged
    with Library.open_read_only(url) as lib:
        assert any("product of 11 and 13" in e.content for e in lib.list())  # learned on the server
        queued = lib.outcome(recorded.structured_content["id"])  # type: ignore[index]
        assert queued is not None and queued.status == "absorbed"
        assert (lib.run_config(queued.outcome.run_id) or {})["task"] == "math"  # the task the server library names
