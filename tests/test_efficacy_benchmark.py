"""benchmarks/efficacy.py's --task option: per-task defaults and work folders, and the per-category table, run
against a scripted model served over HTTP."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from flexlearn.library.store import Library
from flexlearn.tasks import Problem
from tests.support.cli import model_uri
from tests.support.fake_openai import FakeOpenAI

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def efficacy() -> ModuleType:
    """benchmarks/efficacy.py as a module (it imports its neighbour item_cache, so benchmarks/ goes on the path)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("efficacy_benchmark", BENCHMARKS / "efficacy.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def parse(efficacy: ModuleType, *argv: object) -> dict[str, object]:
    """The arguments `efficacy.main` would run with, defaults resolved."""
    args = argparse.Namespace(task="gsm8k", train=None, test=None, train_n=None, test_n=None)
    for name, value in zip(argv[::2], argv[1::2], strict=True):
        setattr(args, name, value)
    efficacy.resolve_task_defaults(args)
    return vars(args)


def test_gsm8k_defaults_are_unchanged(efficacy: ModuleType) -> None:
    data = BENCHMARKS / "data" / "gsm8k"
    assert parse(efficacy) == {
        "task": "gsm8k",
        "train": data / "train.jsonl",
        "test": data / "test.jsonl",
        "train_n": 30,
        "test_n": 100,
    }
    assert efficacy.default_work("local:qwen2.5-coder-1.5b", "gsm8k") == (
        BENCHMARKS / ".efficacy" / "local-qwen2.5-coder-1.5b"
    )


def test_formula_has_its_own_data_sizes_and_work_folder(efficacy: ModuleType) -> None:
    data = BENCHMARKS / "data" / "finance_formula"
    assert parse(efficacy, "task", "formula") == {
        "task": "formula",
        "train": data / "train.jsonl",
        "test": data / "val.jsonl",
        "train_n": 60,
        "test_n": 200,
    }
    assert parse(efficacy, "task", "formula", "train_n", 5, "test", Path("t.jsonl"))["test"] == Path("t.jsonl")
    assert parse(efficacy, "task", "formula", "train_n", 5)["train_n"] == 5
    assert efficacy.default_work("local:qwen2.5-coder-1.5b", "formula") == (
        BENCHMARKS / ".efficacy" / "local-qwen2.5-coder-1.5b-formula"
    )


def test_learning_explores_as_flex_learn_does_by_default(efficacy: ModuleType) -> None:
    """The benchmark learns with `flex learn`'s defaults, which the issue's check runs: blind exploration, and the
    rollouts and rounds the library picks for the model."""
    from flexlearn.settings import LEARN

    args = efficacy.build_parser().parse_args([])
    assert args.explore_with_library is LEARN.explore_with_library is False
    assert (args.rollouts, args.rounds) == (None, None)
    assert efficacy.build_parser().parse_args(["--explore-with-library"]).explore_with_library
    assert efficacy.build_parser().parse_args(["--explore-blind"]).explore_blind  # older commands still run


def test_by_category_counts_each_mode(efficacy: ModuleType) -> None:
    test = [
        Problem(id="a", question="qa", answer="1", meta={"category": "Beta"}),
        Problem(id="b", question="qb", answer="1", meta={"category": "Alpha"}),
        Problem(id="c", question="qc", answer="1", meta={"category": "Beta"}),
    ]
    results = {
        "vanilla": [{"problem_id": "a", "correct": True}, {"problem_id": "c", "correct": False}],
        "flex": [{"problem_id": p, "correct": True} for p in "abc"],
    }
    table = efficacy.by_category(test, results)
    assert table == {"Alpha": {"flex": [1, 1]}, "Beta": {"vanilla": [1, 2], "flex": [2, 2]}}
    assert list(table) == ["Alpha", "Beta"]
    assert efficacy.by_category([Problem(id="a", question="q", answer="1")], results) == {}


def write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": a, "category": c}) + "\n" for q, a, c in rows))
    return path


def test_a_formula_run_prints_a_table_per_category_and_resumes_from_its_cache(
    efficacy: ModuleType,
    tmp_path: Path,
    scripted_server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train = write(
        tmp_path / "train.jsonl",
        [("What is the sum of 12 and 30?", "42.0", "sums"), ("What is the product of 6 and 7?", "42.0", "products")],
    )
    test = write(
        tmp_path / "test.jsonl",
        [
            ("What is the sum of 20 and 5?", "25.0", "sums"),
            ("What is the product of 3 and 4?", "12.0", "products"),
            ("What is the sum of 1 and 2?", "3.0", "sums"),
        ],
    )
    work = tmp_path / "work"
    argv = ["efficacy.py", "--task", "formula", "--model", model_uri(scripted_server), "--modes", "vanilla,flex"]
    argv += ["--train", str(train), "--test", str(test), "--train-n", "2", "--test-n", "3", "--work", str(work)]
    monkeypatch.setattr(sys, "argv", argv)

    efficacy.main()
    printed = capsys.readouterr()
    first = json.loads(printed.out)
    assert "vanilla 3/3, 0 min, ~0.0 min an item" in printed.err  # each item's progress, with the rate
    cached = [json.loads(line) for line in (work / "items.jsonl").read_text().splitlines()]
    assert len(cached) == 6 and sum(row["seconds"] for row in cached) > 0  # each item's wall time is kept
    assert first["test"] == {"file": str(test), "n": 3}
    assert set(first["modes"]) == {"vanilla", "flex"}
    assert set(first["by_category"]) == {"products", "sums"}
    for mode in ("vanilla", "flex"):
        assert [first["by_category"][kind][mode][1] for kind in ("products", "sums")] == [1, 2]
        correct = sum(first["by_category"][kind][mode][0] for kind in ("products", "sums"))
        assert correct == first["modes"][mode]["correct"]
        assert first["modes"][mode]["lenient_correct"] >= correct
        assert 0 <= first["modes"][mode]["no_answer"] <= 3
    assert set(first["paired_lenient"]) == {"flex-vanilla"}
    with Library.open(work / "train2.flexlib", create=False) as lib:
        assert {e.title for e in lib.list()} == {"sums", "products"}

    requests = len(scripted_server.requests)
    efficacy.main()
    again = json.loads(capsys.readouterr().out)
    assert len(scripted_server.requests) == requests  # learned and evaluated already: all from the cache
    assert (again["modes"], again["by_category"]) == (first["modes"], first["by_category"])


def test_the_progress_line_gives_the_rate_and_what_is_left(efficacy: ModuleType) -> None:
    assert efficacy.progress_line("flex", 12, 117, 780.0) == "flex 12/117, 13 min, ~1.1 min an item, ~1 h 54 min left"
    assert efficacy.progress_line("flex", 117, 117, 7020.0) == "flex 117/117, 1 h 57 min, ~1.0 min an item"
    assert efficacy.progress_line("icl", 0, 10, 5.0) == "icl 0/10"


def test_an_item_is_read_leniently_only_when_it_states_no_answer(efficacy: ModuleType) -> None:
    task = efficacy.get_task("formula")
    problem = Problem(id="a", question="q", answer="250000.0")
    sentence = {"correct": False, "reply": "Therefore, the Working Capital is $250,000.00."}
    wrong_line = {"correct": False, "reply": "It is 250,000.\nFinal answer: 250.00"}
    assert efficacy.lenient_correct(task, problem, sentence)
    assert not efficacy.lenient_correct(task, problem, wrong_line)  # a stated answer is read as stated
    assert not efficacy.lenient_correct(task, problem, {"correct": False, "final_answer": "250000"})  # ACE's: as scored
    assert efficacy.lenient_correct(task, problem, {"correct": True})


@pytest.mark.parametrize(
    ("concurrency", "threads", "cpus", "learned", "plan"),
    [
        # Two servers of one thread answer; ACE learns one problem at a time, on one server of both threads.
        (2, 1, 2, False, [("learn", 1, 2), ("answer", 2, 1)]),
        (2, 1, 2, True, [("answer", 2, 1)]),
        (4, 2, 4, False, [("learn", 1, 4), ("answer", 4, 2)]),  # never more threads than cores
        (1, 1, 8, False, [("learn", 1, 1), ("answer", 1, 1)]),
        (0, 1, 2, False, [("learn", 1, 1), ("answer", 1, 1)]),
    ],
)
def test_the_peer_learns_on_one_server_of_every_thread_and_answers_on_several(
    efficacy: ModuleType, concurrency: int, threads: int, cpus: int, learned: bool, plan: list
) -> None:
    assert efficacy.ace_servers(concurrency, threads, cpus, learned) == plan


# A stand-in for ace_peer.py run by `--ace-python` (ACE itself lives in an environment of its own, outside the
# project's install): it logs how it was called, asks each server it is given for one real completion, and
# writes what ace_peer.py writes: state.json after learning, one item per test problem after answering.
STAND_IN_PEER = r"""
import json, sys, urllib.request
from pathlib import Path

argv = sys.argv[2:]  # sys.argv[1] is ace_peer.py, which the stand-in replaces
urls = argv[argv.index("--base-url") + 1 : argv.index("--model")]
work = Path(argv[argv.index("--work") + 1])
with (work / "calls.jsonl").open("a") as log:
    log.write(json.dumps({"urls": urls, "learn_only": "--learn-only" in argv}) + "\n")
for url in urls:
    body = {"model": argv[argv.index("--model") + 1], "messages": [{"role": "user", "content": "2+2="}]}
    body = json.dumps({**body, "max_tokens": 2}).encode()
    request = urllib.request.Request(f"{url}/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        assert json.loads(reply.read())["choices"][0]["message"]["content"] is not None
if "--learn-only" in argv:
    train = Path(argv[argv.index("--train") + 1]).read_text().splitlines()
    (work / "state.json").write_text(json.dumps({"trained": len(train), "phases": {"learn": {"calls": 1}}}))
else:
    rows = [json.loads(line) for line in Path(argv[argv.index("--test") + 1]).read_text().splitlines()]
    answers = [rows[0]["answer"]] + ["" for _ in rows[1:]]  # the first right, the rest unanswered
    with (work / "items.jsonl").open("w") as items:
        for row, answer in zip(rows, answers):
            usage = {"calls": 1, "prompt_tokens": 10, "completion_tokens": 2}
            items.write(json.dumps({"problem_id": row["id"], "final_answer": answer, **usage}) + "\n")
"""


@pytest.mark.slow
def test_the_ace_row_learns_on_one_server_then_answers_on_one_per_worker(
    efficacy: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("llama_cpp.server")
    peer = tmp_path / "peer.py"
    peer.write_text(STAND_IN_PEER)
    python = tmp_path / "ace-python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{peer}" "$@"\n')
    python.chmod(0o755)
    train = write(tmp_path / "train.jsonl", [("What is the sum of 12 and 30?", "42.0", "sums")])
    test = write(
        tmp_path / "test.jsonl", [("What is the sum of 20 and 5?", "25.0", "sums"), ("Sum of 1 and 2?", "3.0", "sums")]
    )
    work = tmp_path / "work"
    argv = ["efficacy.py", "--task", "formula", "--model", "local", "--modes", "ace", "--ace-python", str(python)]
    argv += ["--train", str(train), "--test", str(test), "--train-n", "1", "--test-n", "2"]
    argv += ["--work", str(work), "--concurrency", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("FLEX_LOCAL_THREADS", "1")

    efficacy.main()
    out = json.loads(capsys.readouterr().out)
    calls = [json.loads(line) for line in (work / "ace" / "calls.jsonl").read_text().splitlines()]
    assert [(len(c["urls"]), c["learn_only"]) for c in calls] == [(1, True), (2, False)]
    assert out["modes"]["ace"]["correct"] == 1 and out["modes"]["ace"]["n"] == 2
    assert sorted(p.name for p in (work / "ace").glob("serve-*.log")) == ["serve-0.log", "serve-1.log"]

    efficacy.main()  # learned already: straight to answering
    calls = [json.loads(line) for line in (work / "ace" / "calls.jsonl").read_text().splitlines()]
    assert [(len(c["urls"]), c["learn_only"]) for c in calls[2:]] == [(2, False)]
    assert json.loads(capsys.readouterr().out)["modes"]["ace"]["correct"] == 1


async def test_an_embedded_models_replies_are_kept_in_the_work_folder_for_the_next_mode(
    efficacy: ModuleType, tmp_path: Path
) -> None:
    """The agent's first attempt is vanilla's request: on an embedded model the agent phase, a later invocation,
    takes vanilla's kept reply; any other model is asked every time."""
    from flexlearn.loop.agents import Agents
    from flexlearn.models import FunctionModel, Message, Prompt

    request = Prompt([Message("user", "2+2?")])
    for phase in range(2):
        model = FunctionModel(lambda p, role, schema: "Final answer: 4", name="local:scripted")
        agents = Agents.single(model)
        memo = efficacy._reply_memo(agents, tmp_path)
        assert memo is not None and agents.actor is memo and agents.critic is memo
        reply = await agents.actor.generate(request)
        assert reply.text == "Final answer: 4" and reply.usage.prompt_tokens > 0
        assert (len(model.calls), memo.hits) == ((1, 0) if phase == 0 else (0, 1))
    assert (tmp_path / "replies.jsonl").exists()
    hosted = Agents.single(FunctionModel(lambda p, role, schema: "4", name="openai:gpt"))
    assert efficacy._reply_memo(hosted, tmp_path / "hosted") is None
