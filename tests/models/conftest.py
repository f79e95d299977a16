"""Fixtures shared by the model-seam tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flexlearn.models.openai_compat import structured_mode_cache_clear
from tests.support.fake_openai import FakeOpenAI


@pytest.fixture(autouse=True)
def _fresh_mode_cache() -> Iterator[None]:
    """Each test starts with no endpoint's structured mode remembered: ports are reused between tests, so a
    cached mode could leak from one fake server to the next."""
    structured_mode_cache_clear()
    yield
    structured_mode_cache_clear()


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake
