"""What a sandboxed block may use. Defaults suit a math tool call: seconds of CPU, hundreds of MB, a page of output."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits and options for one sandboxed run.

    cpu_seconds and memory_bytes (address space) apply to each process the code starts; max_processes bounds
    how many it may have at once, so the whole run can use at most max_processes × memory_bytes.
    wall_seconds bounds the whole run, including every child, after which all of it is killed.
    output_bytes caps stdout and stderr each; going past it stops the run (nothing is buffered beyond the cap).
    file_bytes caps any one file written; disk_bytes caps the private /work and /tmp (with a private filesystem).
    site_packages makes the installed third-party packages (numpy, sympy, ...) importable, read-only.
    use_namespaces=False skips the Linux namespaces even where they work (weaker; for diagnosis and tests).
    """

    cpu_seconds: float = 10.0
    wall_seconds: float = 15.0
    memory_bytes: int = 512 * MiB
    output_bytes: int = 64 * 1024
    file_bytes: int = 16 * MiB
    disk_bytes: int = 64 * MiB
    max_processes: int = 32
    max_open_files: int = 256
    site_packages: bool = True
    use_namespaces: bool = True

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "wall_seconds", "memory_bytes", "output_bytes", "file_bytes", "disk_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.max_processes < 1 or self.max_open_files < 16:
            raise ValueError("SandboxLimits: max_processes must be >= 1 and max_open_files >= 16")


DEFAULT_LIMITS = SandboxLimits()
"""The limits a run gets when none are given (frozen, so one shared instance is safe)."""
