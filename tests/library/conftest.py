"""Fixtures shared by the library tests. `lib` is a new library on each backend in turn (an SQLite file, then a
PostgreSQL database: see `library_target` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flexlearn.library.store import Library


@pytest.fixture
def lib(library_target: str | Path) -> Iterator[Library]:
    with Library.open(library_target) as lib:
        yield lib
