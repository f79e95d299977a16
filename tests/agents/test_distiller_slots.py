"""The distiller's fixed slots for chat models, its generality check, and the reply bound they imply."""

from __future__ import annotations

import json
from typing import Any

from flexlearn.agents.distiller import DistilledReply, distill, slot_schema, specific_to
from flexlearn.experience import Level, Provenance, Zone
from flexlearn.models.base import PromptKind
from flexlearn.models.function import FunctionModel
from flexlearn.models.local import schema_token_bound
from flexlearn.trajectory import StepRecord

QUESTION = "Tobias saves $5 a month for 3 months. Tobias then mows 4 lawns at $15 each. How much does he have?"


def steps(*results: bool) -> list[StepRecord]:
    return [StepRecord(0, i, f"attempt {i}", str(i), ok, "" if ok else "fb") for i, ok in enumerate(results)]


def lesson(zone: str, level: str, content: str) -> dict[str, str]:
    return {
        "zone": zone,
        "level": level,
        "title": "t",
        "content": content,
        "quote": "q",
        "instead": "i",
        "example": "e",
    }


async def run(
    kind: PromptKind, results: tuple[bool, ...], items: list[dict[str, str]], *, slots: bool = True
) -> tuple[Any, list[Any]]:
    schemas: list[Any] = []

    def reply(prompt: Any, role: str, schema: Any) -> str:
        schemas.append(schema)
        return json.dumps({"category": "savings over time", "experiences": items})

    out = await distill(
        FunctionModel(reply, prompt_kind=kind),
        question=QUESTION,
        answer="75",
        category="gsm8k",
        steps=steps(*results),
        provenance=Provenance(),
        slots=slots,
    )
    return out, schemas


async def test_a_chat_model_is_held_to_one_principle_and_one_pattern_per_supported_zone() -> None:
    _, schemas = await run(PromptKind.CHAT, (False, True), [])
    slots = schemas[0]["properties"]["experiences"]["prefixItems"]
    assert [(s["properties"]["zone"]["const"], s["properties"]["level"]["const"]) for s in slots] == [
        ("golden", "principle"),
        ("golden", "pattern"),
        ("warning", "principle"),
        ("warning", "pattern"),
    ]
    warning_pattern = slots[3]
    assert {"instead", "example"} <= set(warning_pattern["required"])
    # Only the zones the trajectory supports: all attempts right, golden slots only.
    _, schemas = await run(PromptKind.CHAT, (True,), [])
    assert len(schemas[0]["properties"]["experiences"]["prefixItems"]) == 2


async def test_a_base_model_keeps_the_free_list_and_so_does_a_chat_model_by_default() -> None:
    _, schemas = await run(PromptKind.COMPLETION, (False, True), [])
    assert schemas[0] == DistilledReply.model_json_schema()
    _, schemas = await run(PromptKind.CHAT, (False, True), [], slots=False)
    assert schemas[0] == DistilledReply.model_json_schema()


def test_every_reply_of_the_slot_shape_validates_as_a_distilled_reply() -> None:
    schema = slot_schema([Zone.GOLDEN, Zone.WARNING])
    items = [lesson(z, lv, "A general lesson.") for z in ("golden", "warning") for lv in ("principle", "pattern")]
    assert DistilledReply.model_validate({"category": "c", "experiences": items})
    assert schema["properties"]["experiences"]["minItems"] == 4
    # The local backend sizes its reply budget from the schema: a fixed tuple is bounded.
    bound = schema_token_bound(schema)
    assert bound is not None and 500 < bound < 5000


async def test_a_principle_or_pattern_naming_the_problems_particulars_is_dropped() -> None:
    items = [
        lesson("golden", "principle", "Add up every source of money before comparing it with the cost."),
        lesson("golden", "pattern", "Tobias earns 15 per lawn, so multiply lawns by 15."),  # names and numbers
        lesson("warning", "principle", "Do not forget a source of income that repeats each month."),
        lesson("warning", "pattern", "Using 15 for every job gives the wrong total."),  # the problem's number
    ]
    out, _ = await run(PromptKind.CHAT, (False, True), items)
    kept = {(e.zone, e.level): e.content for e in out.experiences if e.level != Level.CASE}
    assert set(kept) == {(Zone.GOLDEN, Level.PRINCIPLE), (Zone.WARNING, Level.PRINCIPLE)}
    # Cases are about this problem by definition: they stay.
    assert {e.zone for e in out.experiences if e.level == Level.CASE} == {Zone.GOLDEN, Zone.WARNING}


def test_specific_to_reads_numbers_of_two_digits_and_names_inside_sentences() -> None:
    assert specific_to("Tobias should subtract", QUESTION)
    assert specific_to("Multiply by 15.", QUESTION)
    assert not specific_to("Multiply the count by the price, then add the allowance for 3 months.", QUESTION)
    assert not specific_to("How to find a total: add the parts.", QUESTION)  # "How" opens a sentence there too


async def test_a_lesson_written_again_at_another_level_is_kept_once() -> None:
    same = "Add up every source of money before comparing it with the cost."
    items = [lesson("golden", "principle", same), lesson("golden", "pattern", same + " ")]
    out, _ = await run(PromptKind.CHAT, (True,), items)
    assert [e.level for e in out.experiences] == [Level.PRINCIPLE, Level.CASE]


async def test_a_category_the_data_gives_titles_the_lessons() -> None:
    schemas: list[Any] = []

    def reply(prompt: Any, role: str, schema: Any) -> str:
        schemas.append(schema)
        items = [lesson("golden", "principle", "Add up every source of money before comparing it with the cost.")]
        return json.dumps({"category": "general", "experiences": items})

    out = await distill(
        FunctionModel(reply, prompt_kind=PromptKind.CHAT),
        question=QUESTION,
        answer="75",
        category="gsm8k",
        steps=steps(True),
        provenance=Provenance(),
        known_category="savings and earnings",
    )
    assert {e.title for e in out.experiences} == {"savings and earnings"}


async def test_every_dropped_lesson_says_why() -> None:
    items = [
        lesson("golden", "principle", "Add up every source of money before comparing it with the cost."),
        lesson("golden", "pattern", "Tobias earns 15 per lawn."),
        lesson("warning", "principle", "Never guess."),
    ]
    out, _ = await run(PromptKind.CHAT, (True,), items)
    assert [(d["level"], d["why"]) for d in out.dropped] == [
        ("pattern", "names this problem's numbers or names"),
        ("principle", "no attempt supports a warning lesson"),
    ]
