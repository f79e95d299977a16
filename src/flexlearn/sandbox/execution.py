"""The outcome of one sandboxed run, and the text the model sees next."""

from __future__ import annotations

from dataclasses import dataclass

from flexlearn.sandbox.limits import DEFAULT_LIMITS, MiB, SandboxLimits

# What each way of being stopped looks like to the model: one plain line it can act on.
_STOP_LINES = {
    "wall_time": "Stopped: the wall-clock limit of {wall:g} s was reached (an infinite loop, or too slow).",
    "cpu_time": "Stopped: the CPU-time limit of {cpu:g} s was reached.",
    "output": "Stopped: the output exceeded {output} bytes; print less (a summary, not every value).",
    "memory": "Stopped: out of memory (limit {memory} MB).",
}


@dataclass(frozen=True)
class Execution:
    """What happened when a block ran.

    exit_code is None when the process was killed (see killed_reason: "wall_time", "cpu_time", "output",
    "memory", "stopped" or "signal N"). truncated says stdout or stderr was cut at the output limit.
    protections lists the isolation layers that were active for this run (see docs/sandbox.md).
    """

    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    killed_reason: str | None
    truncated: bool
    seconds: float
    protections: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()
    limits: SandboxLimits = DEFAULT_LIMITS

    @property
    def ok(self) -> bool:
        """The block ran to the end and exited 0."""
        return self.exit_code == 0 and self.killed_reason is None

    def observation(self, *, max_stderr_chars: int = 2000) -> str:
        """The text shown to the model after its block: stdout, the tail of stderr (where a traceback ends),
        and one clear line if a limit stopped the run or the exit code was not 0."""
        parts: list[str] = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.truncated:
            parts.append("[output truncated]")
        if self.stderr:
            err = self.stderr.rstrip("\n")
            if len(err) > max_stderr_chars:
                err = "[... stderr shortened ...]\n" + err[-max_stderr_chars:]
            parts.append("[stderr]\n" + err)
        if self.killed_reason is not None:
            template = _STOP_LINES.get(self.killed_reason, "Stopped: the process was killed ({reason}).")
            lim = self.limits
            parts.append(
                template.format(
                    reason=self.killed_reason,
                    wall=lim.wall_seconds,
                    cpu=lim.cpu_seconds,
                    output=lim.output_bytes,
                    memory=lim.memory_bytes // MiB,
                )
            )
        elif self.exit_code not in (0, None):
            parts.append(f"Exit code {self.exit_code}.")
        return "\n".join(parts) if parts else "(no output)"
