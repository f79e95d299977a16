"""Normal use: output, errors, the standard library, state between blocks, limits in the observation."""

from __future__ import annotations

import asyncio

import pytest

from flexlearn.sandbox import Execution, SandboxLimits, SandboxRefused, SandboxSession, run_python, run_python_sync
from tests.sandbox.conftest import Mode, processes_named, tagged


async def test_print_and_exit_code(mode: Mode) -> None:
    result = await run_python("print('hello', 6 * 7)", limits=mode.limits())
    assert result.stdout == "hello 42\n"
    assert result.ok and result.exit_code == 0 and not result.timed_out and not result.truncated
    assert result.observation() == "hello 42"


async def test_stderr_is_captured(mode: Mode) -> None:
    result = await run_python("import sys\nprint('to err', file=sys.stderr)\nprint('to out')", limits=mode.limits())
    assert result.stdout == "to out\n"
    assert result.stderr == "to err\n"
    assert "[stderr]\nto err" in result.observation()


async def test_exception_gives_a_traceback(mode: Mode) -> None:
    result = await run_python("x = 1\n\ndef f():\n    return x / 0\n\nf()", limits=mode.limits())
    assert result.exit_code == 1 and result.killed_reason is None
    observation = result.observation()
    assert "ZeroDivisionError: division by zero" in observation
    assert "line 4, in f" in observation and "return x / 0" in observation
    assert "flexlearn-sandbox-driver" not in observation and 'File "<string>"' not in observation
    assert observation.endswith("Exit code 1.")


async def test_sys_exit_code_is_reported(mode: Mode) -> None:
    result = await run_python("import sys\nsys.exit(3)", limits=mode.limits())
    assert result.exit_code == 3 and result.killed_reason is None
    assert result.observation() == "Exit code 3."


async def test_standard_library_is_available(mode: Mode) -> None:
    code = (
        "import itertools, math, fractions, decimal, collections, functools, re, json, random, statistics\n"
        "print(math.comb(10, 3), sum(1 for _ in itertools.permutations(range(4))), fractions.Fraction(3, 6))"
    )
    result = await run_python(code, limits=mode.limits())
    assert result.stdout == "120 24 1/2\n", result.observation()


async def test_installed_packages_only_when_allowed(mode: Mode) -> None:
    code = "import sympy\nprint(sympy.factorint(360))"
    allowed = await run_python(code, limits=mode.limits())
    assert allowed.stdout == "{2: 3, 3: 2, 5: 1}\n", allowed.observation()
    denied = await run_python(code, limits=mode.limits(site_packages=False))
    assert "ModuleNotFoundError: No module named 'sympy'" in denied.stderr


async def test_files_written_stay_in_the_fresh_workdir(mode: Mode) -> None:
    first = await run_python(
        "open('notes.txt', 'w').write('kept?')\nimport os\nprint(os.listdir('.'))", limits=mode.limits()
    )
    assert "notes.txt" in first.stdout
    second = await run_python("import os\nprint(os.path.exists('notes.txt'))", limits=mode.limits())
    assert second.stdout == "False\n"


async def test_no_state_between_calls_without_a_session(mode: Mode) -> None:
    await run_python("answer = 41", limits=mode.limits())
    result = await run_python("print(answer + 1)", limits=mode.limits())
    assert "NameError: name 'answer' is not defined" in result.stderr


async def test_session_replays_successful_blocks_silently(mode: Mode) -> None:
    session = SandboxSession()
    first = await run_python(
        "print('first')\nanswer = 41\ndef double(n):\n    return 2 * n", limits=mode.limits(), session=session
    )
    assert first.stdout == "first\n"
    failed = await run_python("answer = 1 / 0", limits=mode.limits(), session=session)
    assert not failed.ok
    second = await run_python("print(double(answer + 1) // 2)", limits=mode.limits(), session=session)
    assert second.stdout == "42\n", second.observation()
    assert len(session.blocks) == 2


def test_sync_wrapper() -> None:
    assert run_python_sync("print(1 + 1)").stdout == "2\n"


async def test_strict_refuses_without_network_isolation(mode: Mode) -> None:
    if mode.info.network_isolated:
        result = await run_python("print('ran')", limits=mode.limits(), strict=True)
        assert result.stdout == "ran\n"
    else:
        with pytest.raises(SandboxRefused, match="network"):
            await run_python("print('ran')", limits=mode.limits(), strict=True)


async def test_cancelling_kills_the_run(mode: Mode) -> None:
    code, tag = tagged("import time\ntime.sleep(600)")
    task = asyncio.create_task(run_python(code, limits=mode.limits(wall_seconds=600)))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):  # SIGKILL is delivered at once; reaping by the kernel may take a moment on a busy host
        if not processes_named(tag):
            break
        await asyncio.sleep(0.1)
    assert processes_named(tag) == []


def test_observation_names_each_limit() -> None:
    limits = SandboxLimits(wall_seconds=15, cpu_seconds=10, output_bytes=65536)

    def stopped(reason: str) -> str:
        return Execution(
            "", "", None, reason == "wall_time", reason, reason == "output", 1.0, limits=limits
        ).observation()

    assert "wall-clock limit of 15 s" in stopped("wall_time")
    assert "CPU-time limit of 10 s" in stopped("cpu_time")
    assert "[output truncated]" in stopped("output") and "65536 bytes" in stopped("output")
    assert "killed (signal 11)" in stopped("signal 11")
    assert Execution("", "", 0, False, None, False, 0.1).observation() == "(no output)"


def test_long_stderr_keeps_its_end() -> None:
    result = Execution("", "noise\n" * 2000 + "ValueError: the point", 1, False, None, False, 0.1)
    observation = result.observation(max_stderr_chars=500)
    assert observation.count("noise") < 100 and "ValueError: the point" in observation


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="wall_seconds"):
        SandboxLimits(wall_seconds=0)
