"""Helpers for tests that drive the real `flex` CLI in a subprocess against the scripted model server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.fake_openai import FakeOpenAI

TRAIN = [
    ("sum", 12, 30),
    ("product", 6, 7),
    ("difference", 50, 8),
    ("sum", 25, 17),
    ("product", 9, 4),
    ("difference", 90, 45),
]
TEST = [("sum", 23, 41), ("product", 8, 3), ("difference", 70, 15)]
OPS = {"sum": lambda a, b: a + b, "product": lambda a, b: a * b, "difference": lambda a, b: a - b}


def write_set(path: Path, items: list[tuple[str, int, int]]) -> Path:
    lines = [
        json.dumps({"question": f"What is the {k} of {a} and {b}?", "answer": str(OPS[k](a, b))}) for k, a, b in items
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def flex(*args: str, env_extra: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env_extra or {})}
    env.pop("FLEX_MODEL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "flexlearn", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"flex {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def model_uri(fake: FakeOpenAI) -> str:
    return f"openai:scripted@{fake.base_url}"
