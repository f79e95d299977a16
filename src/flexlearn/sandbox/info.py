"""Which protections the sandbox gets on this machine, measured by running an empty block."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flexlearn.sandbox.limits import SandboxLimits
from flexlearn.sandbox.runner import run_python_sync

# Every layer the launcher can set up; docs/sandbox.md says what each one protects. ("user_namespace" is left
# out: it is only the means by which an unprivileged caller gets the other namespaces, never missed by root.)
ALL_PROTECTIONS = (
    "separate_process",
    "resource_limits",
    "clean_environment",
    "fresh_workdir",
    "no_new_privileges",
    "kill_on_exit",
    "process_limit",
    "separate_user",
    "network_namespace",
    "mount_namespace",
    "private_filesystem",
    "pid_namespace",
    "ipc_namespace",
    "uts_namespace",
)


@dataclass(frozen=True)
class SandboxInfo:
    """The protections active for a default run here, the ones missing, and why they are missing."""

    active: frozenset[str]
    missing: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def network_isolated(self) -> bool:
        return "network_namespace" in self.active

    def describe(self) -> str:
        lines = [f"active:  {', '.join(p for p in ALL_PROTECTIONS if p in self.active)}"]
        lines.append(f"missing: {', '.join(self.missing) or 'none'}")
        lines += [f"note:    {n}" for n in self.notes]
        return "\n".join(lines)


@functools.cache
def sandbox_info(*, use_namespaces: bool = True) -> SandboxInfo:
    """Run `pass` in the sandbox once (cached per process) and report which layers were active."""
    execution = run_python_sync("pass", limits=SandboxLimits(use_namespaces=use_namespaces))
    active = execution.protections
    missing = tuple(p for p in ALL_PROTECTIONS if p not in active)
    return SandboxInfo(active=active, missing=missing, notes=execution.notes)
