"""A different model per role through the real `flex` CLI: each request reaches its role's server and model, and
the run records, the calls and each experience's provenance name them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexlearn.library.store import Library
from tests.support.cli import TEST, TRAIN, flex, write_set
from tests.support.fake_openai import FakeOpenAI, FakeRequest
from tests.support.scripted_flex import ScriptedFlex

MARKERS = {
    "careful problem solver": "actor",
    "You are a critic": "critic",
    "You are a verifier": "judge",
    "You distil experience": "distiller",
    "You maintain an experience library": "updater",
}


def role_of(request: FakeRequest) -> str:
    system = request.json["messages"][0]["content"]
    return next(role for marker, role in MARKERS.items() if marker in system)


def calls(server: FakeOpenAI) -> set[tuple[str, str]]:
    """(role, model asked for) of every request the server received."""
    return {(role_of(r), r.json["model"]) for r in server.requests_to("/v1/chat/completions")}


@pytest.fixture()
def two_servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI(ScriptedFlex()) as solver, FakeOpenAI(ScriptedFlex()) as writer:
        yield solver, writer


def test_a_model_per_role(tmp_path: Path, two_servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    solver, writer = two_servers
    actor = f"openai:actor-m@{solver.base_url}"
    critic = f"openai:critic-m@{solver.base_url}"
    distiller = f"openai:distiller-m@{writer.base_url}"
    updater = f"openai:updater-m@{writer.base_url}"
    train = write_set(tmp_path / "train.jsonl", TRAIN)
    test = write_set(tmp_path / "test.jsonl", TEST)
    lib_path = tmp_path / "lib.flexlib"

    learned = flex(
        "learn",
        "--task",
        "math",
        "--train",
        str(train),
        "--library",
        str(lib_path),
        "--model",
        actor,
        "--critic-model",
        critic,
        "--updater-model",
        updater,
        "--rollouts",
        "2",
        "--rounds",
        "3",
        "--json",
        env_extra={"FLEX_DISTILLER_MODEL": distiller},
    )
    expected = {"actor": actor, "critic": critic, "distiller": distiller, "updater": updater}
    data = json.loads(learned.stdout)
    assert data["models"] == expected
    assert set(data["calls"]) == {"actor", "critic", "distiller", "updater"}
    assert calls(solver) == {("actor", "actor-m"), ("critic", "critic-m")}
    assert calls(writer) == {("distiller", "distiller-m"), ("updater", "updater-m")}

    with Library.open(lib_path, create=False) as lib:
        run_id = lib.latest_run("learn")
        assert run_id is not None and lib.run_config(run_id)["models"] == expected
        entries = lib.list()
        assert entries
        assert {(e.provenance.model, e.provenance.actor) for e in entries} == {(distiller, actor)}

    # Provenance survives the portable format; an import keeps it as the file's claim, not as its own.
    exported = tmp_path / "lib.json"
    flex("library", "export", str(lib_path), str(exported))
    assert {e["provenance"]["model"] for e in json.loads(exported.read_text())["experiences"]} == {distiller}
    copy = tmp_path / "copy.flexlib"
    flex("library", "import", str(copy), str(exported))
    with Library.open(copy, create=False) as lib:
        claims = {(e.provenance.claimed["model"], e.provenance.claimed["actor"]) for e in lib.list()}
        assert claims == {(distiller, actor)}

    for server in two_servers:
        server.requests.clear()
    out_dir = tmp_path / "run"
    flex(
        "eval",
        "--task",
        "math",
        "--test",
        str(test),
        "--modes",
        "vanilla,agent",
        "--model",
        actor,
        "--critic-model",
        critic,
        "--out",
        str(out_dir),
        "--json",
    )
    assert calls(solver) == {("actor", "actor-m"), ("judge", "critic-m")}
    assert not writer.requests
    results = json.loads((out_dir / "results.json").read_text())
    assert results["models"] == {"actor": actor, "critic": critic}
    assert set(results["calls"]) == {"actor", "judge"}  # the blind judge is metered apart from the critic


def test_help_lists_the_role_options() -> None:
    for command in ("learn", "demo", "inherit"):
        text = flex(command, "--help", env_extra={"COLUMNS": "250"}).stdout
        for option in ("--critic-model", "--distiller-model", "--updater-model"):
            assert option in text, (command, option)
    text = flex("eval", "--help", env_extra={"COLUMNS": "250"}).stdout
    assert "--critic-model" in text and "FLEX_CRITIC_MODEL" in text


def test_learn_table_names_each_role_and_model(tmp_path: Path, two_servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    solver, writer = two_servers
    train = write_set(tmp_path / "train.jsonl", TRAIN[:2])
    shown = flex(
        "learn",
        "--task",
        "math",
        "--train",
        str(train),
        "--library",
        str(tmp_path / "lib.flexlib"),
        "--model",
        f"openai:actor-m@{solver.base_url}",
        "--distiller-model",
        f"openai:distiller-m@{writer.base_url}",
        env_extra={"COLUMNS": "250"},
    ).stdout
    table = shown[shown.index("Model calls by role") :]
    rows = {
        line.split()[1]: line
        for line in table.splitlines()
        if line.split()[1:2] and line.split()[1] in MARKERS.values()
    }
    assert "distiller-m" in rows["distiller"] and "actor-m" in rows["actor"] and "actor-m" in rows["updater"]
