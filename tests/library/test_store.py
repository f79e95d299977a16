from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Experience, Level, Provenance, Zone
from flexlearn.library import store
from flexlearn.library.store import Library, fts_query


def make(
    content: str,
    *,
    zone: Zone = Zone.GOLDEN,
    level: Level = Level.PATTERN,
    title: str = "lesson",
    examples: list[str] | None = None,
    parent_id: str | None = None,
    problem_ids: list[str] | None = None,
) -> Experience:
    return Experience(
        zone=zone,
        level=level,
        title=title,
        content=content,
        examples=examples or [],
        parent_id=parent_id,
        provenance=Provenance(task="math", problem_ids=problem_ids or []),
    )


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Library]:
    with Library.open(tmp_path / "lib.db") as lib:
        yield lib


# -- opening and schema ------------------------------------------------------------------------------------


def test_open_creates_folder_and_a_wal_file_with_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "lib.db"
    with Library.open(path) as lib:
        assert lib.path == path
        assert lib._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    assert Library.SCHEMA_VERSION == 1
    raw.close()


def test_open_without_create_needs_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match=r"no library at .*missing\.db"):
        Library.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_open_a_file_that_is_not_sqlite_names_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some text, long enough to have a header " * 20)
    with pytest.raises(LibraryError, match=r"notes\.txt"):
        Library.open(path)


def test_open_an_unrelated_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE users (name TEXT)")
    raw.close()
    with pytest.raises(LibraryError, match="not a flexlearn library"):
        Library.open(path)


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    Library.open(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(LibraryError, match=r"schema version 99.*upgrade flexlearn"):
        Library.open(path)


def test_migrations_run_in_order_and_keep_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lib.db"
    with Library.open(path) as lib:
        kept = lib.add(make("keep me"), reason="r")

    def v1_to_v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE experiences ADD COLUMN weight REAL NOT NULL DEFAULT 1.0")

    monkeypatch.setattr(store, "_MIGRATIONS", [*store._MIGRATIONS, v1_to_v2])
    monkeypatch.setattr(Library, "SCHEMA_VERSION", 2)
    with Library.open(path) as lib:
        assert lib.get(kept.id).content == "keep me"
        assert lib.stats()["schema_version"] == 2
        assert lib._conn.execute("SELECT weight FROM experiences").fetchone()[0] == 1.0
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    raw.close()


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    with Library.open(path) as lib:
        exp = lib.add(make("persist", examples=["e1"], problem_ids=["p1"]), reason="r")
    with Library.open(path, create=False) as lib:
        again = lib.get(exp.id)
    assert again == exp
    assert again.provenance.problem_ids == ["p1"]


# -- adding and reading ------------------------------------------------------------------------------------


def test_add_assigns_the_content_id_then_suffixes(lib: Library) -> None:
    first, second = make("use symmetry"), make("use symmetry")
    a = lib.add(first, reason="new", run_id="r1", problem_id="p1")
    b = lib.add(second, reason="again")
    c = lib.add(make("use symmetry"), reason="third")
    assert a.id == first.id == first.content_id()
    assert (b.id, c.id) == (f"{a.id}-2", f"{a.id}-3")
    events = lib.events()
    assert [e.action for e in events] == [Action.ADD] * 3
    assert events[0].after == events[0].candidate == a.to_dict()
    assert (events[0].run_id, events[0].problem_id, events[0].experience_id) == ("r1", "p1", a.id)


def test_add_refuses_a_taken_explicit_id(lib: Library) -> None:
    exp = lib.add(make("x1"), reason="r")
    with pytest.raises(LibraryError, match="already exists"):
        lib.add(Experience(zone=Zone.GOLDEN, level=Level.CASE, title="t", content="y", id=exp.id), reason="r")


def test_add_checks_the_parent(lib: Library) -> None:
    with pytest.raises(LibraryError, match="not in the library"):
        lib.add(make("orphan", parent_id="nope"), reason="r")
    case = lib.add(make("a case", level=Level.CASE), reason="r")
    with pytest.raises(LibraryError, match="more general"):
        lib.add(make("a pattern under a case", parent_id=case.id), reason="r")
    assert lib.count() == 1


def test_get_find_list_count_children(lib: Library) -> None:
    principle = lib.add(make("general", level=Level.PRINCIPLE), reason="r")
    p1 = lib.add(make("pattern one", parent_id=principle.id), reason="r")
    w = lib.add(make("warning one", zone=Zone.WARNING, level=Level.CASE, parent_id=p1.id), reason="r")
    p2 = lib.add(make("pattern two", parent_id=principle.id), reason="r")
    assert lib.find("missing") is None
    with pytest.raises(LibraryError, match="missing"):
        lib.get("missing")
    assert [e.id for e in lib.list()] == [principle.id, p1.id, w.id, p2.id]
    assert [e.id for e in lib.list(zone="golden", level=Level.PATTERN)] == [p1.id, p2.id]
    assert lib.count() == 4 and lib.count(zone=Zone.WARNING) == 1 and lib.count(level="principle") == 1
    assert [e.id for e in lib.children(principle.id)] == [p1.id, p2.id]
    with pytest.raises(ValueError):
        lib.list(zone="purple")


def test_stats_has_every_key_even_when_empty(lib: Library) -> None:
    assert lib.stats() == {
        "total": 0,
        "by_zone": {"golden": 0, "warning": 0},
        "by_level": {"principle": 0, "pattern": 0, "case": 0},
        "by_zone_level": {
            "golden": {"principle": 0, "pattern": 0, "case": 0},
            "warning": {"principle": 0, "pattern": 0, "case": 0},
        },
        "events": {"add": 0, "merge": 0, "discard": 0, "edit": 0, "delete": 0, "import": 0},
        "schema_version": 1,
    }
    lib.add(make("a", zone=Zone.WARNING, level=Level.CASE), reason="r")
    lib.discard(make("b"), reason="dup")
    stats = lib.stats()
    assert stats["total"] == 1 and stats["by_zone"] == {"golden": 0, "warning": 1}
    assert stats["by_zone_level"]["warning"]["case"] == 1 and stats["by_level"]["case"] == 1
    assert stats["events"]["add"] == 1 and stats["events"]["discard"] == 1


# -- search ------------------------------------------------------------------------------------------------


@pytest.fixture
def filled(lib: Library) -> Library:
    lib.add(make("Pick bases by the triangle area formula; use Heron's formula", title="triangle area"), reason="r")
    lib.add(make("Cook pasta in salted boiling water", title="cooking"), reason="r")
    lib.add(make("Check modular arithmetic: reduce mod 9 before dividing", title="modular"), reason="r")
    lib.add(
        make(
            "Heron area computations overflow; factor first",
            zone=Zone.WARNING,
            level=Level.CASE,
            title="triangle pitfalls",
        ),
        reason="r",
    )
    return lib


def test_search_ranks_the_relevant_entry_first(filled: Library) -> None:
    hits = filled.search("What is the area of a triangle with sides 13, 14, 15?")
    assert hits[0][0].title == "triangle area"
    assert all(e.title != "cooking" for e, _ in hits)
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0


def test_search_stems_and_filters(filled: Library) -> None:
    assert filled.search("triangles", k=5)  # porter: triangles ~ triangle
    warning = filled.search("triangle", zone=Zone.WARNING)
    assert [e.title for e, _ in warning] == ["triangle pitfalls"]
    assert filled.search("triangle", zone="golden", level="case") == []
    assert len(filled.search("triangle", k=1)) == 1


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        '"',
        '\'""',
        "AND OR NOT NEAR",
        "NEAR(a b, 3)",
        "title:foo",
        "\\frac{a^2}{b_1} + \\sqrt{x} = $\\boxed{42}$",
        "CCOP(=O)(OCC)c1ccc([N+](=O)[O-])cc1",
        "a* OR -b ^c {d} (e",
        "\x00\x01 null byte",
        "日本語のテキスト",
        "x" * 10_000,
        " ".join(f"word{i}" for i in range(500)),
    ],
)
def test_search_accepts_any_text(filled: Library, query: str) -> None:
    assert isinstance(filled.search(query), list)


def test_fts_query_quotes_caps_and_drops_noise() -> None:
    assert fts_query("") == ""
    assert fts_query("a the of x") == ""
    assert fts_query('say "NEAR" it') == '"say" OR "near"'
    long = fts_query(" ".join(f"w{'x' * (i % 30)}{i}" for i in range(200)))
    assert long.count(" OR ") == store.MAX_QUERY_TOKENS - 1


def test_nearest_excludes_itself_and_reads_only_k(filled: Library) -> None:
    target = filled.search("triangle area")[0][0]
    assert [e.title for e in filled.nearest(target, k=5)] == ["triangle pitfalls"]
    assert filled.nearest(target, k=0) == []
    candidate = make("triangle area by Heron", title="triangle")
    assert filled.nearest(candidate, k=1)[0].title == "triangle area"


# -- changes -----------------------------------------------------------------------------------------------


def test_merge_replaces_content_unions_examples_and_provenance(lib: Library) -> None:
    target = lib.add(make("old wording", examples=["e1", "e2", "e3"], problem_ids=["p1"]), reason="r")
    cand = make("new idea", examples=["e3", "e4", "e5", "e6"], problem_ids=["p1", "p2"])
    merged = lib.merge(target.id, content="telescoping sums", examples=None, candidate=cand, reason="same")
    assert merged.id == target.id and merged.content == "telescoping sums"
    assert merged.examples == ["e1", "e2", "e3", "e4", "e5"]
    assert merged.provenance.problem_ids == ["p1", "p2"]
    assert merged.updated_at >= target.updated_at
    event = lib.events()[-1]
    assert event.action == Action.MERGE and event.reason == "same"
    assert event.before == target.to_dict() and event.after == merged.to_dict()
    assert event.candidate is not None and event.candidate["content"] == "new idea"
    # The index follows the update.
    assert lib.search("telescoping")[0][0].id == target.id and lib.search("wording") == []
    again = lib.merge(target.id, content="x", examples=["only"], candidate=cand, reason="r")
    assert again.examples == ["only"]


def test_merge_into_a_missing_target_fails(lib: Library) -> None:
    with pytest.raises(LibraryError):
        lib.merge("nope", content="c", examples=None, candidate=make("c"), reason="r")
    assert lib.events() == []


def test_discard_only_logs(lib: Library) -> None:
    lib.discard(make("meh"), reason="too specific", run_id="r1", problem_id="p9")
    assert lib.count() == 0
    [event] = lib.events()
    assert (event.action, event.reason, event.run_id, event.problem_id) == (Action.DISCARD, "too specific", "r1", "p9")
    assert event.candidate is not None and event.candidate["content"] == "meh" and event.after is None


def test_edit_set_parent_and_delete(lib: Library) -> None:
    principle = lib.add(make("general idea", level=Level.PRINCIPLE), reason="r")
    pattern = lib.add(make("pattern text"), reason="r")
    edited = lib.edit(pattern.id, reason="clearer", content="reworded pattern", examples=["ex"])
    assert edited.id == pattern.id and edited.content == "reworded pattern" and edited.examples == ["ex"]
    assert lib.search("reworded")[0][0].id == pattern.id
    assert lib.set_parent(pattern.id, principle.id).parent_id == principle.id
    with pytest.raises(LibraryError, match="more general"):
        lib.edit(principle.id, reason="r", level="case")  # its child is a pattern
    with pytest.raises(LibraryError, match="edit takes"):
        lib.edit(pattern.id, reason="r", id="other")
    with pytest.raises(LibraryError, match="cannot edit"):
        lib.edit(pattern.id, reason="r", zone="purple")

    lib.delete(principle.id, reason="obsolete")
    assert lib.find(principle.id) is None
    assert lib.get(pattern.id).parent_id is None
    assert lib.search("general idea") == []
    actions = [e.action for e in lib.events()]
    assert actions == [Action.ADD, Action.ADD, Action.EDIT, Action.EDIT, Action.DELETE]
    assert lib.events()[-1].before is not None


def test_counters(lib: Library) -> None:
    a = lib.add(make("a1"), reason="r")
    b = lib.add(make("b1"), reason="r")
    lib.record_retrieval([a.id, b.id, a.id, "gone"])
    lib.record_outcome([a.id], helped=True)
    lib.record_outcome([a.id, b.id], helped=False)
    assert (lib.get(a.id).retrieved, lib.get(a.id).helped, lib.get(a.id).hurt) == (2, 1, 1)
    assert (lib.get(b.id).retrieved, lib.get(b.id).helped, lib.get(b.id).hurt) == (1, 0, 1)


def test_events_filters_by_run_and_seq(lib: Library) -> None:
    lib.add(make("one"), reason="r", run_id="A")
    lib.add(make("two"), reason="r", run_id="B")
    lib.add(make("three"), reason="r", run_id="A")
    assert [e.after["content"] for e in lib.events(run_id="A") if e.after] == ["one", "three"]
    first = lib.events()[0].seq
    assert [e.seq for e in lib.events(since_seq=first)] == [first + 1, first + 2]


# -- transactions ------------------------------------------------------------------------------------------


def test_a_failed_transaction_leaves_nothing(lib: Library) -> None:
    with pytest.raises(RuntimeError), lib.transaction():
        lib.add(make("will vanish"), reason="r")
        lib.begin_run("run1", kind="learn", config={})
        lib.record_problem("run1", "p1", status="done", trajectory={})
        raise RuntimeError("boom")
    assert lib.count() == 0 and lib.events() == [] and lib.run_config("run1") is None
    lib.add(make("still writable"), reason="r")
    assert lib.count() == 1


def test_a_failed_inner_block_undoes_only_itself(lib: Library) -> None:
    with lib.transaction():
        kept = lib.add(make("kept"), reason="r")
        with pytest.raises(LibraryError):
            lib.add(make("bad", parent_id="missing"), reason="r")
        with pytest.raises(RuntimeError), lib.transaction():
            lib.add(make("inner"), reason="r")
            raise RuntimeError
    assert [e.id for e in lib.list()] == [kept.id]
    assert len(lib.events()) == 1


def test_writes_are_visible_to_another_connection_only_after_commit(tmp_path: Path) -> None:
    path = tmp_path / "lib.db"
    with Library.open(path) as writer, Library.open(path) as reader:
        with writer.transaction():
            writer.add(make("pending"), reason="r")
            assert reader.count() == 0
        assert reader.count() == 1


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from flexlearn.experience import Experience, Level, Zone
    from flexlearn.library.store import Library

    path, tag = Path(sys.argv[1]), sys.argv[2]
    # Start together: each says it is ready, then waits for the other.
    (path.parent / f"ready-{tag}").touch()
    while len(list(path.parent.glob("ready-*"))) < 2:
        time.sleep(0.005)
    with Library.open(path) as lib:
        for i in range(30):
            exp = Experience(zone=Zone.GOLDEN, level=Level.CASE, title=tag, content=f"{tag} lesson {i}")
            with lib.transaction():
                lib.add(exp, reason="concurrent", run_id=tag)
                time.sleep(0.002)  # hold the write lock a little, so the other writer has to wait for it
    """
)


def test_two_processes_can_create_and_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag], stderr=subprocess.PIPE, text=True)
        for tag in ("alpha", "beta")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with Library.open(path) as lib:
        assert lib.count() == 60
        assert len(lib.events()) == 60
        assert len(lib.events(run_id="alpha")) == len(lib.events(run_id="beta")) == 30


# -- runs and meta -----------------------------------------------------------------------------------------


def test_run_records_support_resuming(lib: Library) -> None:
    assert lib.latest_run("learn") is None and lib.run_status("r1") is None
    lib.begin_run("r1", kind="learn", config={"model": "m", "epochs": 2})
    lib.begin_run("r2", kind="learn", config={})
    lib.begin_run("e1", kind="eval", config={})
    lib.begin_run("r1", kind="learn", config={"ignored": True})  # a resume keeps the original config
    assert lib.run_config("r1") == {"model": "m", "epochs": 2}
    assert lib.latest_run("learn") == "r2" and lib.latest_run("eval") == "e1"
    assert lib.run_status("r1") == "running"

    lib.record_problem("r1", "p2", status="explored", trajectory={"steps": [1]})
    lib.record_problem("r1", "p1", status="explored", trajectory={"steps": []})
    lib.record_problem("r1", "p2", status="done", trajectory={"steps": [1, 2]})
    assert lib.problem_status("r1") == {"p2": "done", "p1": "explored"}
    assert list(lib.problem_status("r1")) == ["p2", "p1"]
    assert lib.trajectory("r1", "p2") == {"steps": [1, 2]}
    assert lib.trajectory("r1", "p3") is None and lib.problem_status("r2") == {}

    lib.finish_run("r1")
    assert lib.run_status("r1") == "done"
    with pytest.raises(LibraryError, match="begin_run"):
        lib.record_problem("nope", "p1", status="x", trajectory={})
    with pytest.raises(LibraryError):
        lib.finish_run("nope", "failed")


def test_meta(lib: Library) -> None:
    assert lib.get_meta("task") is None
    lib.set_meta("task", "math")
    lib.set_meta("task", "gsm8k")
    assert lib.get_meta("task") == "gsm8k"
    assert lib.get_meta("schema_version") == "1"
    with pytest.raises(LibraryError):
        lib.set_meta("schema_version", "7")
