"""Fixtures for the sandbox tests: each test runs once with the Linux namespaces and once without them (the
fallback), skipping an escape only where the sandbox itself reports the protection against it as missing."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace

import pytest

from flexlearn.sandbox import SandboxInfo, SandboxLimits, sandbox_info


class Mode:
    """One way of running the sandbox, with the protections it measured on this machine."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.use_namespaces = name == "namespaces"
        self.info: SandboxInfo = sandbox_info(use_namespaces=self.use_namespaces)

    def limits(self, **changes: object) -> SandboxLimits:
        return replace(SandboxLimits(use_namespaces=self.use_namespaces), **changes)

    def require(self, *any_of: str) -> None:
        """Skip, naming the reason the sandbox gave, unless at least one of these protections is active."""
        if not self.info.active.intersection(any_of):
            pytest.skip(f"{self.name}: sandbox reports none of {any_of} active here ({'; '.join(self.info.notes)})")


@pytest.fixture(params=["namespaces", "basic"])
def mode(request: pytest.FixtureRequest) -> Mode:
    return Mode(request.param)


def tagged(code: str) -> tuple[str, str]:
    """`code` preceded by a line naming its process (and every child it forks) with a fresh tag, so a test can
    find the processes of its own run and no one else's (other suites on this machine may use the sandbox too)."""
    tag = "fx" + uuid.uuid4().hex[:12]
    prefix = f"import ctypes\nctypes.CDLL(None).prctl(15, b{tag!r}, 0, 0, 0)\n"  # 15 = PR_SET_NAME
    return prefix + code, tag


def processes_named(tag: str) -> list[int]:
    """Pids of live (not zombie) processes whose name is `tag`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except OSError:
            continue
        if status.get("Name", "").strip() == tag and not status.get("State", "").startswith("Z"):
            found.append(int(entry))
    return found


def processes_with(marker: bytes) -> list[int]:
    """Pids of live processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found
