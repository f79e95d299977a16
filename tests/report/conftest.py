"""Run directories written by the real loops, once per test session (see `runs.py`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.report.runs import write_all


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return asyncio.run(write_all(tmp_path_factory.mktemp("runs")))
