"""Each escape the sandbox promises to contain, attempted for real. Where the sandbox reports the protection
against an escape as missing (the fallback without namespaces, as root), the test is skipped with that reason."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from flexlearn.sandbox import run_python
from tests.sandbox.conftest import Mode, processes_named, processes_with, tagged


async def test_infinite_loop_is_stopped_by_the_wall_clock(mode: Mode) -> None:
    code, tag = tagged("print('started')\nwhile True:\n    pass")
    result = await run_python(code, limits=mode.limits(wall_seconds=2))
    assert result.timed_out and result.killed_reason == "wall_time" and result.exit_code is None
    assert result.seconds < 12
    assert result.observation().splitlines() == [
        "started",
        "Stopped: the wall-clock limit of 2 s was reached (an infinite loop, or too slow).",
    ]
    assert processes_named(tag) == []


async def test_busy_loop_is_stopped_by_the_cpu_limit(mode: Mode) -> None:
    result = await run_python("while True:\n    pass", limits=mode.limits(cpu_seconds=1, wall_seconds=20))
    assert result.killed_reason == "cpu_time", result
    assert "CPU-time limit of 1 s" in result.observation()


async def test_fork_bomb_is_contained(mode: Mode) -> None:
    mode.require("process_limit")
    code, tag = tagged(
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)\n"
    )
    result = await run_python(code, limits=mode.limits(wall_seconds=3, max_processes=16))
    assert result.timed_out
    assert processes_named(tag) == []
    assert subprocess.run(["true"], check=False, timeout=30).returncode == 0  # the host can still start processes


async def test_allocating_10_gb_fails(mode: Mode) -> None:
    result = await run_python("block = bytearray(10 * 1024 ** 3)\nprint('allocated')", limits=mode.limits())
    assert "allocated" not in result.stdout
    assert "MemoryError" in result.stderr or result.killed_reason is not None
    assert not result.ok


async def test_allocating_step_by_step_hits_the_memory_limit(mode: Mode) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))"
    result = await run_python(code, limits=mode.limits(memory_bytes=256 * 1024 * 1024))
    assert "MemoryError" in result.stderr or result.killed_reason is not None, result


async def test_writing_1_gb_to_stdout_is_cut_short(mode: Mode) -> None:
    code, tag = tagged("import sys\nline = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(line)")
    result = await run_python(code, limits=mode.limits())
    assert result.truncated and result.killed_reason == "output"
    assert len(result.stdout) <= mode.limits().output_bytes
    assert result.seconds < 10
    assert "[output truncated]" in result.observation()
    assert processes_named(tag) == []


async def test_writing_a_huge_file_is_refused(mode: Mode) -> None:
    code = "with open('big.bin', 'wb') as f:\n    for _ in range(1024):\n        f.write(bytes(1 << 20))"
    result = await run_python(code, limits=mode.limits(file_bytes=4 * 1024 * 1024))
    assert not result.ok and result.killed_reason in (None, "signal 25")  # EFBIG, or SIGXFSZ
    assert result.seconds < 10


async def test_users_ssh_key_is_not_readable(mode: Mode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mode.require("private_filesystem", "separate_user")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_test"
    key.write_text("SECRET-SSH-KEY-7731")
    key.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    code = (
        "import os\n"
        f"for path in [{str(key)!r}, os.path.expanduser('~/.ssh/id_test')]:\n"
        "    try:\n"
        "        print('LEAK', open(path).read())\n"
        "    except OSError as e:\n"
        "        print('denied', type(e).__name__)\n"
    )
    result = await run_python(code, limits=mode.limits())
    assert "SECRET-SSH-KEY-7731" not in result.stdout + result.stderr
    assert result.stdout.count("denied") == 2, result.observation()


async def test_etc_shadow_is_not_readable(mode: Mode) -> None:
    mode.require("private_filesystem", "separate_user")
    result = await run_python("print(open('/etc/shadow').read())", limits=mode.limits())
    assert result.stdout == ""
    assert "PermissionError" in result.stderr or "FileNotFoundError" in result.stderr


async def test_host_files_are_not_writable(mode: Mode, tmp_path: Path) -> None:
    mode.require("private_filesystem", "separate_user")
    target = tmp_path / "planted.txt"
    tmp_path.chmod(0o755)
    result = await run_python(f"open({str(target)!r}, 'w').write('planted')", limits=mode.limits())
    assert not result.ok and not target.exists()


async def test_parent_environment_is_not_visible(mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEX_API_KEY", "sk-test-secret-5512")
    own = await run_python("import os\nprint(sorted(os.environ.items()))", limits=mode.limits())
    assert "sk-test-secret-5512" not in own.stdout and "FLEX_API_KEY" not in own.stdout
    assert own.stdout.startswith("[('HOME'"), own.stdout

    mode.require("pid_namespace", "separate_user")
    code = (
        "import os\n"
        "for pid in [os.getppid(), 1] + [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    try:\n"
        "        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = await run_python(code, limits=mode.limits())
    assert "sk-test-secret-5512" not in result.stdout + result.stderr


async def test_no_connection_reaches_a_local_listener(mode: Mode) -> None:
    mode.require("network_namespace")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        accepted: list[object] = []

        def accept() -> None:
            with contextlib.suppress(OSError):  # the timeout: what the test hopes for
                accepted.append(listener.accept())

        thread = threading.Thread(target=accept)
        thread.start()
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('CONNECTED')\n"
            "except OSError as e:\n"
            "    print('blocked', e)\n"
        )
        result = await run_python(code, limits=mode.limits())
        thread.join()
    assert result.stdout.startswith("blocked"), result.observation()
    assert accepted == []


async def test_no_process_outlives_the_step(mode: Mode) -> None:
    # A daemon the classic way: fork, new session, fork again, exec a long sleep with a recognisable argument.
    seconds = f"4321.{uuid.uuid4().int % 10**6}"
    code, tag = tagged(
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        fd = os.open('/dev/null', os.O_RDWR)\n"
        "        for n in (0, 1, 2):\n"
        "            os.dup2(fd, n)\n"
        f"        os.execv('/bin/sleep', ['sleep', '{seconds}'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('daemon started')\n"
    )
    result = await run_python(code, limits=mode.limits())
    assert result.stdout == "daemon started\n", result.observation()
    assert processes_with(b"sleep\x00" + seconds.encode()) == []
    assert processes_named(tag) == []


async def test_privileges_are_dropped(mode: Mode) -> None:
    mode.require("separate_user")
    result = await run_python("import os\nprint(os.getuid(), os.geteuid())", limits=mode.limits())
    uid, euid = map(int, result.stdout.split())
    assert uid != 0 and euid != 0
    assert uid != os.getuid() or os.getuid() != 0
