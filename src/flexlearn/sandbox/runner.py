"""Running a block of Python in the sandbox: start the launcher, stream its output under a cap, read its report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flexlearn.sandbox.errors import SandboxRefused
from flexlearn.sandbox.execution import Execution
from flexlearn.sandbox.limits import DEFAULT_LIMITS, SandboxLimits

LAUNCHER = Path(__file__).with_name("_launcher.py")
# The launcher (and through it the code) never sees the caller's environment: API keys stay in this process.
_LAUNCHER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
# Time the launcher gets beyond wall_seconds to set up, kill and report before we kill it ourselves.
_GRACE_SECONDS = 10.0
_READ_CHUNK = 65536


@dataclass
class SandboxSession:
    """Carries state from block to block by replay: each run first re-executes, silently, the session's earlier
    blocks that succeeded, then the new one. Every run is still a fresh process; the limits cover the replay too,
    and code with side effects or randomness is re-run, not resumed."""

    blocks: list[str] = field(default_factory=list)


def _interpreter() -> tuple[str, list[str], list[str]]:
    """The real interpreter (not a venv's symlink), the directories it needs, and the installed packages."""
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    system = {os.path.realpath(sys.base_prefix), os.path.realpath(sysconfig.get_path("stdlib"))}
    site = {os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")}
    return python, sorted(system), sorted(p for p in site if os.path.isdir(p))


class _Capped:
    """Keeps the first `cap` bytes of a stream and drains (discarding) the rest; calls `overflow` once past it."""

    def __init__(self, cap: int, overflow: Any) -> None:
        self.cap, self.overflow = cap, overflow
        self.data = bytearray()
        self.truncated = False

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            room = self.cap - len(self.data)
            self.data += chunk[:room]
            if len(chunk) > room and not self.truncated:
                self.truncated = True
                self.overflow()

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _read_report(fd: int) -> dict[str, Any]:
    """Merge the launcher's JSON lines (protections and notes accumulate, other fields overwrite)."""
    raw = bytearray()
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, _READ_CHUNK):
            raw += chunk
    report: dict[str, Any] = {"protections": [], "notes": []}
    for line in raw.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            report["protections"] += item.pop("protections", [])
            report["notes"] += item.pop("notes", [])
            report.update(item)
    return report


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _killed_reason(report: dict[str, Any], limits: SandboxLimits, overflow: bool, hard_timeout: bool) -> str | None:
    if overflow:
        return "output"
    if report.get("timed_out") or hard_timeout:
        return "wall_time"
    if report.get("stopped"):
        return "stopped"
    sig = report.get("signal")
    if sig is None:
        return None if "exit_code" in report else "stopped"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and report.get("cpu_seconds", 0) >= limits.cpu_seconds):
        return "cpu_time"
    return f"signal {sig}"


async def run_python(
    code: str, *, limits: SandboxLimits = DEFAULT_LIMITS, session: SandboxSession | None = None, strict: bool = False
) -> Execution:
    """Run `code` as a fresh Python process in the sandbox and return what happened.

    Nothing persists between calls unless a `session` is given (see SandboxSession). With strict=True the run
    is refused (SandboxRefused) unless the code would have no network at all. Cancelling the awaiting task
    kills the run and everything it started.
    """
    python, system_dirs, site_dirs = _interpreter()
    blocks = [*session.blocks, code] if session is not None else [code]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flex-sandbox-") as host_dir:
        names = [f"block{i}.py" for i in range(1, len(blocks) + 1)]
        for name, block in zip(names, blocks, strict=True):
            Path(host_dir, name).write_text(block, encoding="utf-8")
        os.mkdir(Path(host_dir, "root"))
        report_r, report_w = os.pipe()
        config = {
            "python": python,
            "system_dirs": system_dirs,
            "site_dirs": site_dirs if limits.site_packages else [],
            "host_dir": host_dir,
            "blocks": names,
            "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
            "use_namespaces": limits.use_namespaces,
            "strict": strict,
            "report_fd": report_w,
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-I",
                "-S",
                str(LAUNCHER),
                json.dumps(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(report_w,),
                env=_LAUNCHER_ENV,
                start_new_session=True,
            )
        finally:
            os.close(report_w)
        try:
            result = await _supervise(proc, limits)
        finally:
            _kill_group(proc.pid, signal.SIGKILL)
            report = _read_report(report_r)
            os.close(report_r)
    stdout, stderr, hard_timeout = result
    if "refused" in report:
        raise SandboxRefused(f"sandbox refused to run (strict=True): {report['refused']}")
    reason = _killed_reason(report, limits, stdout.truncated or stderr.truncated, hard_timeout)
    execution = Execution(
        stdout=stdout.text(),
        stderr=stderr.text(),
        exit_code=report.get("exit_code") if reason is None else None,
        timed_out=reason == "wall_time",
        killed_reason=reason,
        truncated=stdout.truncated or stderr.truncated,
        seconds=time.monotonic() - start,
        protections=frozenset(report["protections"]),
        notes=tuple(report["notes"]),
        limits=limits,
    )
    if session is not None and execution.ok:
        session.blocks.append(code)
    return execution


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Read a finished future's exception, so that asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


async def _supervise(proc: asyncio.subprocess.Process, limits: SandboxLimits) -> tuple[_Capped, _Capped, bool]:
    """Pump both streams under the cap until the launcher is done; stop it early if the output overflows."""

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Capped(limits.output_bytes, stop), _Capped(limits.output_bytes, stop)
    work = asyncio.gather(out.pump(proc.stdout), err.pump(proc.stderr), proc.wait())
    # When the run is cancelled (a signal ends the command), the pumps are cancelled with it and the gathering
    # future holds their CancelledError: read it, or asyncio logs it with a traceback after the clean message.
    work.add_done_callback(_retrieve)
    try:
        await asyncio.wait_for(work, timeout=limits.wall_seconds + _GRACE_SECONDS)
    except TimeoutError:
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        return out, err, True
    except BaseException:
        _kill_group(proc.pid, signal.SIGKILL)
        # The launcher (SIGTERM-less, so at once) takes the run down with it; wait briefly so the pipes close here
        # and not in a garbage-collected transport after the event loop is gone.
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(proc.wait(), timeout=5)
        raise
    return out, err, False


def run_python_sync(
    code: str, *, limits: SandboxLimits = DEFAULT_LIMITS, session: SandboxSession | None = None, strict: bool = False
) -> Execution:
    """run_python for callers without an event loop (it cannot be called from inside a running one)."""
    return asyncio.run(run_python(code, limits=limits, session=session, strict=strict))
