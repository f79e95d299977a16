"""The scripted FLEX roles with an actor that uses the experience tool, and a library seeded for it: what a learn
run with `--tools experience` is tested with, in-process and on Ray.

The actor searches the library's principles for its problem's kind, reads the details of the first one found,
and answers right only when what the tool showed holds the seeded rule (`RULE`); so the library a run learns
depends on what the tool answered. The seeded entries share no word with anything the scripted distiller writes
into a principle (only a learned case quotes its attempt, tool calls and outputs included), so a search finds the
same entries whenever it runs, and the updater never takes one for a neighbour: every run of the same problems,
however its problems interleave, is shown the same answers and learns the same library. Quarantined entries
(`CANARY` in their text) hang under and beside the active ones; a model must never see them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from flexlearn.library.formats import import_file
from flexlearn.library.store import Library
from tests.support.fake_openai import FakeRequest
from tests.support.scripted_flex import KINDS, ScriptedFlex, parse

RULE = "tallyrule"
CANARY = "CANARY7"


def _entry(id: str, level: str, title: str, content: str, parent: str | None = None) -> dict[str, Any]:
    return {"id": id, "zone": "golden", "level": level, "title": title, "content": content, "parent_id": parent}


# The active entries: a principle for sums, with a case under it, and one for products (none for differences).
SEEDED = [
    _entry("S1", "principle", "quokkasum", "quokkasum carrytens"),
    _entry("S2", "case", "wombat", f"wombat {RULE}", parent="S1"),
    _entry("S3", "principle", "quokkaproduct", f"quokkaproduct {RULE}"),
]
# Imported without trust: a case under the sum principle, and a principle the product search would find.
QUARANTINED = [
    _entry("Q1", "case", "wombat", f"wombat {CANARY}", parent="S1"),
    _entry("Q2", "principle", "quokkaproduct", f"quokkaproduct {CANARY}"),
]
_ID = re.compile(r"\[([\w-]+)\]")


def seed_library(target: Path | str, folder: Path) -> Path | str:
    """The library at `target` (a file, or a database's URL) holding `SEEDED` (trusted) and `QUARANTINED` (waiting
    for approval), imported from files written in `folder` (their names are the entries' origin)."""
    for name, entries, trust in (("seeded", SEEDED, True), ("shared", QUARANTINED, False)):
        source = folder / f"lib-{name}.json"
        source.write_text(json.dumps({"format": "flexlearn.library", "version": 1, "experiences": entries}))
        with Library.open(target) as lib:
            result = import_file(lib, source, trust=trust)
            assert result.quarantined == (0 if trust else len(entries)), result
    return target


class SearchingFlex(ScriptedFlex):
    """ScriptedFlex whose actor, given the experience tool, searches, reads the first entry found and answers by
    what it saw. `observations` counts every tool answer shown to the actor (the last message of a request)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.observations: Counter[str] = Counter()

    def __call__(self, request: FakeRequest) -> str:
        messages: list[dict[str, Any]] = request.json.get("messages", [])
        system = messages[0]["content"] if messages else ""
        if "careful problem solver" in system and "search_experience" in system:
            with self.lock:
                self.roles.append("actor")
            return self.searching(messages)
        return super().__call__(request)

    def searching(self, messages: list[dict[str, Any]]) -> str:
        shown = [m["content"] for m in messages[2:] if m["role"] == "user"]
        if shown:
            with self.lock:
                self.observations[shown[-1]] += 1
        problem = parse(messages[1]["content"].split("Problem:")[-1])
        assert problem is not None, messages[1]["content"]
        kind, a, b = problem
        if not shown:
            return f'Let me look.\n```python\nsearch_experience("quokka{kind}", level="principle")\n```'
        found = _ID.findall(shown[0])
        if len(shown) == 1 and found:
            return f'And the details.\n```python\nexperience_details("{found[0]}")\n```'
        right = KINDS[kind](a, b)
        if any(RULE in s for s in shown) or "Your earlier attempts were wrong" in messages[1]["content"]:
            return f"Using the feedback and experience, the {kind} is {right}. Final answer: \\boxed{{{right}}}"
        return f"A quick guess: the {kind} is {right + 1}. Final answer: \\boxed{{{right + 1}}}"
