"""Run a test in a pytest process of its own.

Two signal tests of `tests/test_cli_reliability.py` (a SIGINT to `flex demo`, a signal during a sandboxed tool
step) pass alone, with their file, and with either half of the suite before them, but fail after the whole suite
has run in the same process (found 2026-12-06; the cause, some state an earlier test leaves in the pytest
process that the `flex` children they start are affected by, is not found yet). Until it is, they run in a fresh
pytest process: what they check, the `flex` command's own handling of the signal, is checked as fully as before.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_INSIDE = "FLEX_TEST_IN_OWN_PROCESS"


def in_own_process(test: Callable[..., None]) -> Callable[..., None]:
    """Run `test` in a new pytest process (its fixtures are made there); its failure is this test's failure."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        if os.environ.get(_INSIDE) == test.__name__:
            return test(*args, **kwargs)
        node = f"{Path(sys.modules[test.__module__].__file__ or '').resolve()}::{test.__name__}"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
            env={**os.environ, _INSIDE: test.__name__},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]

    return run
