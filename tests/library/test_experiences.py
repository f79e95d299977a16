"""Experiences and their log: adding, reading, merging, discarding, editing, deleting, counters."""

from __future__ import annotations

import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Action, Experience, Level, Zone
from flexlearn.library.store import Library
from tests.library.builders import make

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


def test_the_duplicate_check_finds_a_text_by_its_index(lib: Library) -> None:
    # Texts that share their first 64 characters (the index's key) and differ after them; blanks around a text
    # do not count; another zone or level is another entry.
    head = "When the question names a ratio, report it as a decimal, not a percent: "
    ids = [lib.add(make(f"  {head}{tail}\n"), reason="r").id for tail in ("0.18", "0.2", "ROI")]
    lib.add(make(head + "0.2", zone=Zone.WARNING), reason="r")
    assert [lib.id_with_text("golden", "pattern", head + tail) for tail in ("0.18", "0.2", "ROI")] == ids
    assert lib.id_with_text("golden", "pattern", f"\t{head}0.2 ") == ids[1]
    assert lib.id_with_text("golden", "pattern", head + "0.25") is None
    assert lib.id_with_text("golden", "case", head + "0.2") is None
    assert lib.id_with_text("golden", "pattern", "short") is None
    # The query is answered from the index (each engine's plan names it), not by reading the zone and level.
    sql = (
        "SELECT id FROM experiences WHERE zone = 'golden' AND level = 'pattern'"
        " AND substr(trim(content, ' \t\n\r'), 1, 64) = 'x' AND trim(content, ' \t\n\r') = 'x'"
    )
    if lib.path is None:  # a server's planner takes a scan of a table this small unless told not to
        lib._conn.execute("SET enable_seqscan = off")
        plan = " ".join(str(r[0]) for r in lib._conn.execute("EXPLAIN " + sql))
    else:
        plan = " ".join(str(r[-1]) for r in lib._conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "experiences_text" in plan


def test_a_library_without_the_text_index_gets_it_when_opened_for_writing(library_target: str) -> None:
    Library.open(library_target).close()
    with Library.open(library_target) as lib:
        assert lib._conn.has_index("experiences_text")
        lib._conn.execute("DROP INDEX experiences_text")
        assert not lib._conn.has_index("experiences_text")
    with Library.open(library_target, read_only=True) as lib:
        assert not lib._conn.has_index("experiences_text")
    with Library.open(library_target) as lib:
        assert lib._conn.has_index("experiences_text")


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


def test_revision_moves_with_every_logged_change_and_not_with_counters(lib: Library) -> None:
    assert lib.revision() == 0
    exp = lib.add(make("one"), reason="r")
    after_add = lib.revision()
    assert after_add > 0 and [e.seq for e in lib.events(since_seq=0)] == [after_add]
    lib.record_retrieval([exp.id])
    lib.record_outcome([exp.id], helped=True)
    assert lib.revision() == after_add
    lib.edit(exp.id, reason="r", content="two")
    assert lib.revision() > after_add
    assert [e.action for e in lib.events(since_seq=after_add)] == [Action.EDIT]
