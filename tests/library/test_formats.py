from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flexlearn.errors import InputError
from flexlearn.experience import Action, Experience, Level, Provenance, Zone
from flexlearn.library import formats
from flexlearn.library.formats import export_json, import_file, to_markdown
from flexlearn.library.store import Library

REFERENCE = Path(__file__).parent / "fixtures" / "flex_reference_aime_deepseek_trimmed.json"


def write(tmp_path: Path, data: Any, name: str = "in.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def entry(method: Any = "Principle text.", rules: Any = None, trajectory: Any = "Worked case.", **extra: Any) -> dict:
    rules = [{"rule": "Rule one.", "examples": ["ex a", "ex b"]}] if rules is None else rules
    return {"method": method, "rules": rules, "revised_trajectory": trajectory, "problem_category": "math", **extra}


def reference(golden: list | None = None, warning: list | None = None, mixed: list | None = None) -> dict:
    return {"version": "2.0", "library": {"golden": golden or [], "warning": warning or [], "mixed": mixed or []}}


def assert_empty(lib: Library) -> None:
    assert lib.count() == 0 and lib.events() == []


# -- FLEX reference format ---------------------------------------------------------------------------------


def test_reference_file_maps_to_principles_patterns_and_cases(lib: Library) -> None:
    data = json.loads(REFERENCE.read_text())
    result = import_file(lib, REFERENCE, run_id="imp", source_model="deepseek")
    entries = [(zone, e) for zone in ("golden", "warning") for e in data["library"][zone]]
    n_rules = sum(len(e["rules"]) for _, e in entries)
    assert (result.format, result.added, result.skipped) == ("flex-reference", 2 * len(entries) + n_rules, 0)
    assert lib.count(level=Level.PRINCIPLE) == lib.count(level=Level.CASE) == len(entries)
    assert lib.count(level=Level.PATTERN) == n_rules
    assert lib.count(zone=Zone.WARNING, level=Level.PRINCIPLE) == len(data["library"]["warning"])

    for principle, (zone, raw) in zip(lib.list(level=Level.PRINCIPLE), entries, strict=True):
        assert principle.zone == zone and principle.content == raw["method"].strip()
        assert principle.title == raw["problem_category"] and principle.parent_id is None
        assert principle.provenance == Provenance(
            task="math",
            model="deepseek",
            run_id="imp",
            source=principle.provenance.source,
            origin=REFERENCE.name,
            claimed={"usage_count": raw["usage_count"]},
        )
        assert principle.provenance.source == "imported:flex-reference"
        patterns = [c for c in lib.children(principle.id) if c.level == Level.PATTERN]
        assert [p.content for p in patterns] == [r["rule"].strip() for r in raw["rules"]]
        assert patterns[0].examples == raw["rules"][0]["examples"]
        [case] = lib.children(patterns[0].id)
        assert case.level == Level.CASE and case.content == raw["revised_trajectory"].strip()

    events = lib.events()
    assert {e.action for e in events} == {Action.IMPORT} and len(events) == result.added
    assert events[0].reason == f"imported from {REFERENCE.name} (quarantined until approved)"
    assert events[0].run_id == "imp"


def test_reimport_is_idempotent(lib: Library) -> None:
    first = import_file(lib, REFERENCE)
    second = import_file(lib, REFERENCE)
    assert (second.added, second.skipped) == (0, first.added)
    assert lib.count() == first.added and len(lib.events()) == first.added


def test_mixed_nested_methods_and_entries_without_rules(lib: Library, tmp_path: Path) -> None:
    nested = {"problem_category": "Cevian area ratios", "general_method": "Use barycentric coordinates."}
    path = write(
        tmp_path,
        reference(mixed=[entry(method=nested, rules=[], usage_count=3, created_at="2025-10-24T00:30:53.559043")]),
    )
    result = import_file(lib, path)
    assert result.added == 2
    principle, case = lib.list()
    assert principle.zone == Zone.GOLDEN and principle.provenance.source == "imported:flex-reference:mixed"
    assert principle.title == "Cevian area ratios" and principle.content == "Use barycentric coordinates."
    assert principle.retrieved == 0 and principle.provenance.claimed == {"usage_count": 3}
    assert principle.created_at == pytest.approx(1761265853.559043)
    assert case.parent_id == principle.id  # no rules: the case hangs from the principle


def test_untrusted_text_is_cleaned_and_capped(lib: Library, tmp_path: Path) -> None:
    rules = [{"rule": "Keep\x00 this\x07\r\nline\ttab", "examples": [f"ex{i}" for i in range(9)] + ["z" * 5000]}]
    path = write(tmp_path, reference(golden=[entry(method="M" * 20_000, rules=rules, problem_category="t" * 999)]))
    result = import_file(lib, path)
    principle = lib.list(level=Level.PRINCIPLE)[0]
    pattern = lib.list(level=Level.PATTERN)[0]
    assert len(principle.content) == formats.MAX_CONTENT and len(principle.title) == formats.MAX_TITLE
    assert pattern.content == "Keep this\nline\ttab"
    assert pattern.examples == [f"ex{i}" for i in range(5)]
    assert any("method" in w and "cut" in w for w in result.warnings)
    assert any("kept 5 of 10" in w for w in result.warnings)


def test_unknown_memory_types_and_empty_methods_are_left_out_with_warnings(lib: Library, tmp_path: Path) -> None:
    data = reference(golden=[entry(method="  ")])
    data["library"]["spicy"] = [entry()]
    result = import_file(lib, write(tmp_path, data))
    assert result.added == 0 and len(result.warnings) == 2
    assert_empty(lib)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2, 3], "not a library"),
        ({"hello": "world"}, "not a library"),
        (reference(golden=[entry(), entry(method=["a list"])]), r"golden\[1\]\.method: expected a string"),
        (reference(golden=[entry(), entry(rules="rules")]), r"golden\[1\]\.rules: expected a list"),
        (reference(warning=[entry(rules=[{"rule": "r", "examples": "x"}])]), "expected a list of strings"),
        (reference(golden=[entry(), "not an object"]), "expected an object"),
        ({"version": "2.0", "library": {"golden": {"a": 1}}}, "expected a list of entries"),
        ({"format": "flexlearn.library", "version": 2, "experiences": []}, "reads 1"),
        ({"format": "flexlearn.library", "version": 1, "experiences": [{"zone": "gold"}]}, "missing 'level'"),
    ],
)
def test_a_bad_file_writes_nothing_and_names_the_file(lib: Library, tmp_path: Path, data: Any, message: str) -> None:
    path = write(tmp_path, data, name="bad-library.json")
    with pytest.raises(InputError, match=message) as info:
        import_file(lib, path)
    assert "bad-library.json" in str(info.value)
    assert_empty(lib)


def test_missing_file(lib: Library, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        import_file(lib, tmp_path / "nope.json")


# -- flexlearn JSON ----------------------------------------------------------------------------------------


def test_export_then_import_round_trips(lib: Library, tmp_path: Path, new_library_target: Callable[..., Any]) -> None:
    import_file(lib, REFERENCE)
    lib.discard(Experience(zone=Zone.GOLDEN, level=Level.CASE, title="t", content="dup"), reason="dup")
    lib.record_retrieval([lib.list()[0].id])
    out = tmp_path / "out" / "export.json"
    assert export_json(lib, out) == lib.count()
    assert [p.name for p in out.parent.iterdir()] == ["export.json"]  # no temporary file left behind

    data = json.loads(out.read_text())
    assert (data["format"], data["version"]) == ("flexlearn.library", 1)
    assert data["stats"] == lib.stats() and "T" in data["exported_at"]
    assert data["events"][-1]["action"] == "discard" and data["experiences"][0]["zone"] == "golden"

    with Library.open(new_library_target("copy")) as copy:
        result = import_file(copy, out, run_id="restore")
        assert (result.format, result.added, result.skipped) == ("flexlearn.library", lib.count(), 0)

        def text(e: Experience) -> tuple:
            return (e.id, e.zone, e.level, e.title, e.content, e.examples, e.parent_id, e.created_at)

        assert [text(e) for e in copy.list()] == [text(e) for e in lib.list()]
        assert {e.action for e in copy.events()} == {Action.IMPORT}
        again = import_file(copy, out)
        assert (again.added, again.skipped) == (0, lib.count())


def test_flexlearn_import_orders_parents_first_and_drops_dangling_ones(lib: Library, tmp_path: Path) -> None:
    principle = Experience(zone=Zone.GOLDEN, level=Level.PRINCIPLE, title="p", content="general", id="P")
    case = Experience(zone=Zone.GOLDEN, level=Level.CASE, title="c", content="concrete", id="C", parent_id="P")
    stray = Experience(zone=Zone.WARNING, level=Level.CASE, title="s", content="stray", id="S", parent_id="gone")
    data = {"format": "flexlearn.library", "version": 1, "experiences": [e.to_dict() for e in (case, stray, principle)]}
    result = import_file(lib, write(tmp_path, data), source_model="m")
    assert result.added == 3 and any("gone" in w for w in result.warnings)
    assert lib.get("C").parent_id == "P" and lib.get("S").parent_id is None
    assert lib.get("P").provenance.model == "m"


@pytest.mark.parametrize(
    ("parents", "message"),
    [({"B": "A"}, "more general"), ({"A": "B", "B": "A"}, "parent cycle")],
)
def test_flexlearn_import_rejects_a_bad_hierarchy_as_input(
    lib: Library, tmp_path: Path, parents: dict[str, str], message: str
) -> None:
    exps = [
        Experience(zone=Zone.GOLDEN, level=Level.CASE, title=i, content=i, id=i, parent_id=parents.get(i))
        for i in ("A", "B")
    ]
    data = {"format": "flexlearn.library", "version": 1, "experiences": [e.to_dict() for e in exps]}
    with pytest.raises(InputError, match=message):
        import_file(lib, write(tmp_path, data))
    assert_empty(lib)


# -- Markdown ----------------------------------------------------------------------------------------------


def test_markdown_groups_by_zone_and_level_and_indents_children(lib: Library) -> None:
    import_file(lib, REFERENCE)
    principle = lib.list(zone=Zone.GOLDEN, level=Level.PRINCIPLE)[0]
    pattern = lib.children(principle.id)[0]
    case = lib.children(pattern.id)[0]
    md = to_markdown(lib)
    assert md.index("## Golden") < md.index("## Warning")
    assert md.index("### Principles") < md.index("## Warning")
    lines = md.splitlines()
    assert f"- **[principle] math** `{principle.id}`" in "\n".join(lines)
    assert any(line.startswith(f"  - **[pattern] math** `{pattern.id}`") for line in lines)
    assert any(line.startswith(f"    - **[case] math** `{case.id}`") for line in lines)
    assert "### Cases" not in md  # every case sits under its pattern


def test_markdown_of_an_empty_library(lib: Library) -> None:
    assert to_markdown(lib).startswith("# Experience library")
