"""`flex scaling`, `flex inherit` and `flex report` through the real CLI, against the scripted model scripted_server."""

from __future__ import annotations

import json
from pathlib import Path

from flexlearn.library.store import Library
from tests.support.cli import TEST, TRAIN, flex, model_uri, write_set
from tests.support.fake_openai import FakeOpenAI

FIXTURES = Path(__file__).parent / "library" / "fixtures"


def learned_library(tmp_path: Path, fake: FakeOpenAI) -> tuple[Path, Path, Path]:
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    test = write_set(tmp_path / "test.jsonl", TEST)
    lib = tmp_path / "m1.flexlib"
    flex(
        "learn",
        "--task",
        "math",
        "--train",
        str(train),
        "--library",
        str(lib),
        "--model",
        f"openai:m1@{fake.base_url}",
        "--rollouts",
        "1",
        "--rounds",
        "2",
    )
    return train, test, lib


def test_scaling_replays_sizes_and_fits_a_trend(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    _, test, lib = learned_library(tmp_path, scripted_server)
    out = tmp_path / "scaling"
    proc = flex(
        "scaling",
        "--task",
        "math",
        "--library",
        str(lib),
        "--test",
        str(test),
        "--sizes",
        "0,1,all",
        "--model",
        model_uri(scripted_server),
        "--out",
        str(out),
        "--json",
    )
    data = json.loads(proc.stdout)
    points = data["points"]
    assert [p["size"] for p in points] == [0, 1, len(TRAIN)]
    assert points[0]["experiences"] == 0 < points[1]["experiences"] < points[2]["experiences"]
    # With no experience the scripted actor guesses wrong; with any in its prompt it computes.
    assert points[0]["accuracy"] == 0.0 and points[2]["accuracy"] == 1.0
    assert data["fit"]["slope"] > 0 and "ln(1+size)" in data["fit"]["formula"]
    assert json.loads((out / "scaling.json").read_text())["points"] == points
    with (
        Library.open(lib, create=False) as source,
        Library.open(out / "libraries" / f"size-{len(TRAIN)}.flexlib", create=False) as full,
    ):
        assert {e.id for e in full.list()} == {e.id for e in source.list()}
    assert (out / "size-1" / "items.jsonl").exists() and (out / "size-1" / "library.ref.json").exists()


def test_inherit_compares_vanilla_inherited_and_own(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    train, test, lib = learned_library(tmp_path, scripted_server)
    out = tmp_path / "inherit"
    proc = flex(
        "inherit",
        "--task",
        "math",
        "--library",
        str(lib),
        "--test",
        str(test),
        "--train",
        str(train),
        "--model",
        f"openai:m2@{scripted_server.base_url}",
        "--out",
        str(out),
        "--snapshot",
        "--json",
    )
    rows = json.loads(proc.stdout)["rows"]
    assert [r["label"].split(" ", 1)[1] for r in rows] == ["vanilla", "+ inherited library", "+ own library"]
    assert [r["accuracy"] for r in rows] == [0.0, 1.0, 1.0]
    with Library.open(out / "own.flexlib", create=False) as own:
        assert own.count() > 0
        assert all(e.provenance.model.startswith("openai:m2@") for e in own.list())
    results = json.loads((out / "results.json").read_text())
    assert len(results["results"]) == 3 and (out / "inherit.json").exists()
    # --snapshot: a copy of the inherited library, not a reference.
    assert (out / "library.json").exists() and not (out / "library.ref.json").exists()


def test_every_run_writing_command_offers_snapshot() -> None:
    for command in ("eval", "scaling", "inherit", "demo"):
        shown = flex(command, "--help", env_extra={"COLUMNS": "200"}).stdout
        assert "--snapshot" in shown and "Default: off" in shown, command


def test_a_paper_library_imports_and_guides_flex_mode(tmp_path: Path, scripted_server: FakeOpenAI) -> None:
    lib = tmp_path / "paper.flexlib"
    flex(
        "library",
        "import",
        str(lib),
        str(FIXTURES / "flex_reference_aime_deepseek_trimmed.json"),
        "--source-model",
        "deepseek",
        "--trust",  # the authors' published library; otherwise it waits in quarantine for review
    )
    test = tmp_path / "aime.jsonl"
    test.write_text(
        json.dumps({"question": "What is the sum of 12 and 30? Count the integer divisors of the sum.", "answer": "42"})
        + "\n"
    )
    proc = flex(
        "eval",
        "--task",
        "math",
        "--test",
        str(test),
        "--library",
        str(lib),
        "--modes",
        "flex",
        "--model",
        model_uri(scripted_server),
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    [result] = json.loads(proc.stdout)["results"]
    item = json.loads((tmp_path / "run" / "items.jsonl").read_text().splitlines()[0])
    assert item["retrieved"], "nothing from the imported library was retrieved"
    with Library.open(lib, create=False) as paper:
        sources = {paper.get(i).provenance.source for i in item["retrieved"]}
    assert sources == {"imported:flex-reference"}
    assert result["accuracy"] == 1.0
