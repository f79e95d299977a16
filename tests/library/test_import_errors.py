"""A refused import names the file, the entry and the field in one line (pydantic's own report never reaches the
user), and refuses what the strict record (`ImportedExperience`) refuses: nulls where numbers belong, bools,
numbers as text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flexlearn.errors import InputError
from flexlearn.library.formats import import_file
from flexlearn.library.store import Library

ENTRY = {"zone": "golden", "level": "pattern", "title": "triangles", "content": "Use Heron's formula."}


def export(tmp_path: Path, *entries: Any) -> Path:
    path = tmp_path / "shared.json"
    path.write_text(json.dumps({"format": "flexlearn.library", "version": 1, "experiences": list(entries)}))
    return path


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"examples": ["fine", 3]}, "experiences[1].examples[1]: expected a string, got int"),
        (
            {"provenance": {"problem_ids": ["p", 2]}},
            "experiences[1].provenance.problem_ids[1]: expected a string, got int",
        ),
        ({"provenance": {"task": 3}}, "experiences[1].provenance.task: expected a string, got int"),
        ({"helped": None}, "experiences[1].helped: expected a number, got NoneType"),
        ({"hurt": True}, "experiences[1].hurt: expected a number, got bool"),
        ({"updated_at": -1}, "experiences[1].updated_at: -1 is out of range (0 to 7.25812e+09)"),
        ({"parent_id": 4}, "experiences[1].parent_id: expected a string, got int"),
        ({"level": "law"}, "experiences[1].level: 'law' is not a valid Level"),
        ({"zone": "gold", "content": None}, "experiences[1].zone: 'gold' is not a valid Zone (and 1 more)"),
    ],
)
def test_a_refusal_is_one_line_naming_entry_and_field(
    lib: Library, tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError) as info:
        import_file(lib, export(tmp_path, ENTRY, {**ENTRY, **fields}))
    assert str(info.value) == f"{tmp_path / 'shared.json'}: {message}"
    assert "\n" not in str(info.value) and "pydantic" not in str(info.value)
    assert lib.count() == 0


def test_a_missing_field_is_named_first(lib: Library, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"shared\.json: experiences\[0\]: missing 'content' \(and 1 more\)$"):
        import_file(lib, export(tmp_path, {"zone": "golden", "level": 7}))
    with pytest.raises(InputError, match=r"experiences\[0\]: expected an object, got list$"):
        import_file(lib, export(tmp_path, ["golden"]))


def test_what_an_entry_may_leave_out_or_add(lib: Library, tmp_path: Path) -> None:
    extra = {**ENTRY, "id": "E1", "provenance": None, "parent_id": None, "status": "active", "unknown": [1]}
    result = import_file(lib, export(tmp_path, extra, {**ENTRY, "content": "Another lesson."}))
    assert result.added == 2 and result.warnings == []
    e = lib.get("E1")
    assert e.provenance.claimed == {} and e.status == "quarantined" and e.retrieved == 0


def test_a_reference_usage_count_is_checked_as_a_counter(lib: Library, tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    item = {"method": "M.", "rules": [], "problem_category": "c", "usage_count": "42"}
    path.write_text(json.dumps({"version": "2.0", "library": {"golden": [item]}}))
    with pytest.raises(InputError, match=r"library\.golden\[0\]\.usage_count: expected a number, got str$"):
        import_file(lib, path)
    path.write_text(json.dumps({"version": "2.0", "library": {"golden": [{**item, "usage_count": 2**60}]}}))
    with pytest.raises(InputError, match=r"usage_count: 1152921504606846976 is out of range \(0 to 9\.0072e\+15\)$"):
        import_file(lib, path)
