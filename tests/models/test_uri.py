"""from_uri: the grammar, environment variables, and the lazy local backend."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

import flexlearn
from flexlearn.errors import ConfigError
from flexlearn.models.base import Message, Prompt, PromptKind
from flexlearn.models.openai_compat import OpenAICompatModel
from flexlearn.models.uri import OPENAI_BASE_URL, api_key_from_env, from_uri
from tests.support.fake_openai import FakeOpenAI

ENV_VARS = ("FLEX_MODEL", "FLEX_API_KEY", "OPENAI_API_KEY", "FLEX_PROMPT_KIND")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


class FakeLocalModel:
    """Stands in for flexlearn.models.local.LocalModel (written separately; may need llama-cpp)."""

    opened: list[str | None] = []  # noqa: RUF012 - a class-level log is the point

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.name = f"local:{path}"
        self.prompt_kind = PromptKind.COMPLETION

    @classmethod
    def from_uri_path(cls, path: str | None) -> FakeLocalModel:
        cls.opened.append(path)
        return cls(path)


@pytest.fixture
def fake_local(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeLocalModel]]:
    module = types.ModuleType("flexlearn.models.local")
    module.LocalModel = FakeLocalModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flexlearn.models.local", module)
    FakeLocalModel.opened = []
    yield FakeLocalModel


def openai(uri: str, **kwargs: Any) -> OpenAICompatModel:
    model = from_uri(uri, **kwargs)
    assert isinstance(model, OpenAICompatModel)
    return model


# -- openai -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "model", "base_url"),
    [
        ("openai:gpt-4o-mini", "gpt-4o-mini", OPENAI_BASE_URL),
        ("openai:qwen2.5-7b@http://127.0.0.1:8000/v1", "qwen2.5-7b", "http://127.0.0.1:8000/v1"),
        ("openai:qwen@http://127.0.0.1:8000/v1/", "qwen", "http://127.0.0.1:8000/v1"),
        ("openai:org/model@rev2@https://host.example/v1", "org/model@rev2", "https://host.example/v1"),
        ("  openai:Qwen/Qwen2.5-0.5B-Instruct@https://h:1/v1  ", "Qwen/Qwen2.5-0.5B-Instruct", "https://h:1/v1"),
        ("OPENAI:m@http://localhost:11434/v1", "m", "http://localhost:11434/v1"),
    ],
)
def test_openai_uris(uri: str, model: str, base_url: str) -> None:
    built = openai(uri)
    assert (built.model, built.base_url) == (model, base_url)
    assert built.prompt_kind is PromptKind.CHAT
    assert built.name == f"openai:{model}@{base_url}"


@pytest.mark.parametrize(
    ("uri", "complaint"),
    [
        ("openai:", "names no model"),
        ("openai", "names no model"),
        ("openai:m@localhost:8000/v1", "must be a base URL"),
        ("openai:m@", "must be a base URL"),
        ("openai:@http://127.0.0.1:8000/v1", "names no model"),
        ("openai:my model", "malformed model name"),
        ("gpt-4o", "unknown model URI"),
        ("http://127.0.0.1:8000/v1", "unknown model URI"),
        ("", "unknown model URI"),
    ],
)
def test_bad_uris_name_a_valid_example(uri: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as info:
        from_uri(uri)
    assert "openai:gpt-4o-mini" in str(info.value)


def test_timeout_and_explicit_prompt_kind() -> None:
    model = openai("openai:m@http://127.0.0.1:1/v1", prompt_kind=PromptKind.COMPLETION, timeout=3.0)
    assert model.prompt_kind is PromptKind.COMPLETION
    assert model.timeout == 3.0


def test_prompt_kind_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEX_PROMPT_KIND", "Completion")
    assert openai("openai:m").prompt_kind is PromptKind.COMPLETION
    # An explicit argument wins over the environment.
    assert openai("openai:m", prompt_kind=PromptKind.CHAT).prompt_kind is PromptKind.CHAT
    monkeypatch.setenv("FLEX_PROMPT_KIND", "instruct")
    with pytest.raises(ConfigError, match="FLEX_PROMPT_KIND"):
        from_uri("openai:m")


def test_api_key_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert api_key_from_env() is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert api_key_from_env() == "sk-openai"
    monkeypatch.setenv("FLEX_API_KEY", "sk-flex")
    assert api_key_from_env() == "sk-flex"
    monkeypatch.setenv("FLEX_API_KEY", "  ")
    assert api_key_from_env() == "sk-openai"


async def test_uri_model_talks_to_the_server_with_and_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = Prompt([Message("user", "hi")])
    with FakeOpenAI(lambda request: "hello") as server:
        model = from_uri(f"openai:tiny@{server.base_url}")
        try:
            assert (await model.generate(prompt)).text == "hello"
        finally:
            await model.aclose()
        monkeypatch.setenv("FLEX_API_KEY", "sk-flex")
        model = from_uri(f"openai:tiny@{server.base_url}")
        try:
            await model.generate(prompt)
        finally:
            await model.aclose()
    first, second = server.requests
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == "Bearer sk-flex"
    assert first.json["model"] == "tiny"


def test_uri_from_flex_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEX_MODEL", "openai:from-env@http://127.0.0.1:9/v1")
    assert openai(None).model == "from-env"  # type: ignore[arg-type]


# -- local ------------------------------------------------------------------------------------------------------


def test_local_uris(fake_local: type[FakeLocalModel]) -> None:
    default = from_uri("local")
    explicit = from_uri("local:/models/tiny.gguf")
    assert isinstance(default, FakeLocalModel) and isinstance(explicit, FakeLocalModel)
    assert fake_local.opened == [None, "/models/tiny.gguf"]
    assert default.prompt_kind is PromptKind.COMPLETION  # the backend's own default is kept


def test_no_uri_and_no_env_means_local(fake_local: type[FakeLocalModel]) -> None:
    assert isinstance(from_uri(None), FakeLocalModel)
    assert fake_local.opened == [None]


def test_prompt_kind_overrides_the_local_default(
    fake_local: type[FakeLocalModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert from_uri("local", prompt_kind=PromptKind.CHAT).prompt_kind is PromptKind.CHAT
    monkeypatch.setenv("FLEX_PROMPT_KIND", "chat")
    assert from_uri("local").prompt_kind is PromptKind.CHAT


def test_local_backend_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import raise ImportError, as a missing optional dependency would.
    monkeypatch.setitem(sys.modules, "flexlearn.models.local", None)
    with pytest.raises(ConfigError, match=r"pip install 'flexlearn\[local\]'"):
        from_uri("local")


@pytest.mark.parametrize("kind", ["bogus", "CHATTY"])
def test_a_bad_prompt_kind_is_a_config_error_from_either_source(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"--prompt-kind.*'chat' or 'completion'"):
        flexlearn.connect("openai:m@http://127.0.0.1:9/v1", prompt_kind=kind)
    monkeypatch.setenv("FLEX_PROMPT_KIND", kind)
    with pytest.raises(ConfigError, match=r"FLEX_PROMPT_KIND must be 'chat' or 'completion'"):
        from_uri("openai:m@http://127.0.0.1:9/v1")


def test_credentials_in_a_uri_never_appear_in_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        from_uri("openai:bad model@http://user:SECRETKEY@127.0.0.1:9/v1")
    assert "SECRETKEY" not in str(info.value)
