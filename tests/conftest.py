"""Fixtures shared across the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.scripted_flex import ScriptedFlex


@pytest.fixture()
def scripted_server() -> Iterator[FakeOpenAI]:
    """A real OpenAI-compatible server on 127.0.0.1 playing all four FLEX roles deterministically.
    `scripted_server.scripted` is the ScriptedFlex handler (set its `delay` to slow replies)."""
    scripted = ScriptedFlex()
    with FakeOpenAI(scripted) as fake:
        fake.scripted = scripted  # type: ignore[attr-defined]
        yield fake
