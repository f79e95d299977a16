"""The sandbox launcher: a standalone script (stdlib only) started as `python -I -S _launcher.py CONFIG_JSON`.

It builds the isolation the OS offers, runs the code, enforces the wall-clock limit and kills every process
the code left behind. The process tree is:

    launcher (outside the namespaces; child subreaper; supervises the deadline)
      └── init (pid 1 of the new pid namespace when there is one; builds the filesystem view)
            └── worker (rlimits, unprivileged, no new privileges; execs the interpreter on the code)

It reports to the parent as JSON lines on the file descriptor named in the config: which protections are
active, how the worker ended, whether the deadline struck. It imports nothing from flexlearn because it runs
isolated from site-packages, and must not trust the parent's environment.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import pwd
import random
import resource
import select
import shutil
import signal
import stat
import sys
import time
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# The launcher enters these; init alone enters a mount namespace, so that its pivot_root cannot move the
# launcher's root (and /proc) along with it.
NAMESPACES = {"network": CLONE_NEWNET, "pid": CLONE_NEWPID, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
# Atime flags of a mount are locked in a user namespace; a read-only remount must repeat them or fail (EPERM).
KEEP_FLAGS = MS_NOEXEC | 1024 | 2048 | 4096  # noexec, noatime, nodiratime, relatime
MNT_DETACH = 2

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}.get(platform.machine())

# Uids the sandbox runs as when started by root: one fresh uid per run, so RLIMIT_NPROC counts only this run's
# processes and cleanup can find every one of them by uid. Far above the ranges distributions hand out.
DYNAMIC_UID_RANGE = (1_500_000_000, 1_600_000_000)

# The code's working directory (and HOME) inside the private filesystem; tracebacks show it.
WORKDIR = "/sandbox"

DRIVER = """\
# flexlearn-sandbox-driver: runs the blocks in one namespace; earlier blocks (a session's replay) run silently.
import sys, traceback
_work, _paths, _blocks = sys.argv[1], sys.argv[2].split(":") if sys.argv[2] else [], sys.argv[3:]
sys.path[:0] = [_work]
sys.path.extend(_paths)
sys.argv = ["main.py"]
_ns = {"__name__": "__main__", "__builtins__": __builtins__}
for _i, _path in enumerate(_blocks):
    _last = _i == len(_blocks) - 1
    with open(_path, encoding="utf-8") as _f:
        _code = compile(_f.read(), _path, "exec")
    if not _last:
        _saved, sys.stdout = sys.stdout, open("/dev/null", "w")
    try:
        exec(_code, _ns)
    except SystemExit:
        raise
    except BaseException as _e:
        if not _last:
            sys.stdout = _saved
            print(f"(replaying earlier block {_i + 1} of the session failed)", file=sys.stderr)
        traceback.print_exception(type(_e), _e, _e.__traceback__.tb_next)
        sys.exit(1)
    if not _last:
        sys.stdout.close()
        sys.stdout = _saved
"""

_libc = ctypes.CDLL(None, use_errno=True)


class _Stop(Exception):
    """Raised by the SIGTERM handler: the parent wants the run stopped (output limit, cancellation)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _report(fd: int, **fields: Any) -> None:
    os.write(fd, (json.dumps(fields) + "\n").encode())


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _unshare(protections: list[str], notes: list[str]) -> bool:
    """Enter new namespaces, each on its own so one denied kind does not cost the others. Returns whether a
    user namespace was needed (not root), in which case the caller's uid is mapped to itself inside it."""
    uid, gid = os.getuid(), os.getgid()
    in_userns = False
    if os.geteuid() != 0:
        if _libc.unshare(CLONE_NEWUSER) != 0:
            notes.append(f"user namespace denied ({os.strerror(ctypes.get_errno())}); no namespaces")
            return False
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as e:
            notes.append(f"user namespace mapping failed ({e}); no namespaces")
            return False
        in_userns = True
        protections.append("user_namespace")
    for name, flag in NAMESPACES.items():
        if _libc.unshare(flag) == 0:
            protections.append(f"{name}_namespace")
        else:
            notes.append(f"{name} namespace denied ({os.strerror(ctypes.get_errno())})")
    return in_userns


def _bind(source: str, root: str, *, writable: bool = False) -> None:
    """Show `source` at the same path under `root`, read-only unless asked otherwise."""
    target = root + source
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(source, target, None, MS_BIND)
    if not writable:
        keep = os.statvfs(source).f_flag & KEEP_FLAGS
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)


def _build_root(cfg: dict[str, Any], uid: int, gid: int, with_proc: bool) -> None:
    """Replace the filesystem with a tmpfs holding only what Python needs, then pivot into it."""
    root, limits = cfg["host_dir"] + "/root", cfg["limits"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    # The writable tmpfs directories first: a read-only bind that lies below one of them must land on top.
    size = limits["disk_bytes"]
    for path, mode, owner in (
        ("/dev/shm", "1777", ""),
        ("/tmp", "1777", ""),
        (WORKDIR, "0755", f",uid={uid},gid={gid}"),
    ):
        os.makedirs(root + path, exist_ok=True)
        _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={size}{owner}")
    bound: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            os.symlink(os.readlink(top), root + top)
        elif os.path.isdir(top):
            _bind(top, root)
            bound.append(top)
    for path in [*cfg["system_dirs"], *cfg["site_dirs"]]:
        if os.path.isdir(path) and not any(path == b or path.startswith(b + "/") for b in bound):
            _bind(path, root)
            bound.append(path)
    os.makedirs(root + "/etc")
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf"):
        if os.path.isfile(name):
            _bind(name, root)
    if os.path.islink("/etc/localtime"):
        os.symlink(os.readlink("/etc/localtime"), root + "/etc/localtime")
    _write(root + "/etc/passwd", f"root:x:0:0::/:/bin/false\nsandbox:x:{uid}:{gid}::{WORKDIR}:/bin/false\n")
    _write(root + "/etc/group", f"root:x:0:\nsandbox:x:{gid}:\n")
    _write(root + "/etc/hosts", "127.0.0.1 localhost\n")
    os.makedirs(root + "/dev", exist_ok=True)
    for name in ("null", "zero", "full", "random", "urandom"):
        _bind("/dev/" + name, root, writable=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    for block in cfg["blocks"]:
        shutil.copyfile(os.path.join(cfg["host_dir"], block), f"{root}{WORKDIR}/{block}")
    if with_proc:
        os.makedirs(root + "/proc")
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if SYS_PIVOT_ROOT is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {platform.machine()}")
    # pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no way back to the host.
    os.chdir(root)
    _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def _world_usable(path: str) -> bool:
    """Whether an unprivileged uid could reach `path`: every directory above it must be searchable by others."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def _pick_uid() -> int:
    """A uid no account or running process uses."""
    used = {_proc_uid(p) for p in os.listdir("/proc") if p.isdigit()}
    while True:
        uid = random.randrange(*DYNAMIC_UID_RANGE)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if uid not in used:
                return uid


def _set_limits(limits: dict[str, Any], nproc: int) -> None:
    cpu = max(1, int(limits["cpu_seconds"] + 0.999))
    for res, soft, hard in (
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU first, SIGKILL a second later if it is ignored
        (resource.RLIMIT_AS, limits["memory_bytes"], limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"], limits["file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["max_open_files"], limits["max_open_files"]),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_MEMLOCK, 0, 0),
        (resource.RLIMIT_MSGQUEUE, 0, 0),
    ):
        resource.setrlimit(res, (soft, hard))


def _worker(cfg: dict[str, Any], workdir: str, drop_to: int | None, nproc: int, init_pid: int) -> None:
    """Runs in the forked worker: never returns."""
    try:
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != init_pid:
            os._exit(125)
        os.nice(10)
        _set_limits(cfg["limits"], nproc)
        if drop_to is not None:
            os.setgroups([])
            os.setresgid(drop_to, drop_to, drop_to)
            os.setresuid(drop_to, drop_to, drop_to)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        os.chdir(workdir)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": "/tmp" if workdir == WORKDIR else workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # Numeric libraries otherwise start a thread per core, each reserving memory against RLIMIT_AS.
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        blocks = [os.path.join(workdir, b) for b in cfg["blocks"]]
        argv = [cfg["python"], "-I", "-S", "-B", "-u", "-X", "utf8", "-c", DRIVER, workdir, ":".join(cfg["site_dirs"])]
        os.execve(cfg["python"], argv + blocks, env)
    except BaseException as e:
        os.write(2, f"sandbox: could not start the code: {e}\n".encode())
    os._exit(126)


def _init(cfg: dict[str, Any], report_fd: int, ns: list[str], drop_to: int | None, nproc: int) -> None:
    """Runs in the forked init: builds the filesystem view, runs the worker, reports how it ended. Never returns."""
    code = 0
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _prctl(PR_SET_DUMPABLE, 0)
        workdir = cfg["host_dir"] + "/work"
        private = False
        if cfg["use_namespaces"] and _libc.unshare(CLONE_NEWNS) != 0:
            _report(report_fd, notes=[f"mount namespace denied ({os.strerror(ctypes.get_errno())})"])
        elif cfg["use_namespaces"]:
            uid = os.getuid() if drop_to is None else drop_to
            try:
                _build_root(cfg, uid, uid if drop_to is not None else os.getgid(), "pid_namespace" in ns)
                workdir, private = WORKDIR, True
                _report(report_fd, protections=["mount_namespace", "private_filesystem"])
            except OSError as e:
                _report(report_fd, protections=["mount_namespace"], notes=[f"private filesystem failed ({e})"])
        if not private:
            if drop_to is not None and not all(map(_world_usable, [cfg["python"], *cfg["system_dirs"]])):
                drop_to = None  # planned for a private filesystem that did not come about
                _report(report_fd, notes=["runs as root: no private filesystem, interpreter unreachable otherwise"])
            os.makedirs(workdir)
            for block in cfg["blocks"]:
                shutil.copyfile(os.path.join(cfg["host_dir"], block), os.path.join(workdir, block))
            if drop_to is not None:
                os.chmod(cfg["host_dir"], 0o711)
                os.chown(workdir, drop_to, drop_to)
        if drop_to is not None:
            _report(report_fd, protections=["separate_user", "process_limit"])
        me = os.getpid()
        child = os.fork()
        if child == 0:
            _worker(cfg, workdir, drop_to, nproc, me)
        while True:
            pid, status, usage = os.wait4(-1, 0)  # as pid 1 we also reap orphans the code leaves behind
            if pid == child:
                break
        cpu = usage.ru_utime + usage.ru_stime
        if os.WIFSIGNALED(status):
            _report(report_fd, signal=os.WTERMSIG(status), cpu_seconds=cpu)
        else:
            _report(report_fd, exit_code=os.WEXITSTATUS(status), cpu_seconds=cpu)
    except BaseException as e:
        _report(report_fd, notes=[f"init failed: {e}"])
        code = 1
    os._exit(code)


def _descendants(root_pid: int, uid: int | None) -> set[int]:
    """Every live process below `root_pid`, plus every process of the run's own uid (if it has one)."""
    parent: dict[int, int] = {}
    owned: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
            if uid is not None and os.stat(f"/proc/{entry}").st_uid == uid:
                owned.add(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(owned), [root_pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        frontier.extend(kids)
    return found


def _kill_everything(uid: int | None) -> int:
    """SIGKILL until nothing of the run is left (a fork bomb keeps forking while we look). Returns how many."""
    me, killed = os.getpid(), 0
    if os.readlink("/proc/self") != str(me):
        raise RuntimeError("/proc is not this process's pid namespace; refusing to kill by pid")
    for _ in range(200):
        victims = _descendants(me, uid)
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        _reap()
        time.sleep(0.01)
    return killed


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wait(pid: int, deadline: float) -> bool:
    """Wait for `pid` to exit until `deadline`; True if it did (it is then reaped)."""
    fd = os.pidfd_open(pid)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                os.waitpid(pid, 0)
                return True
    finally:
        os.close(fd)


def _on_term(signum: int, frame: object) -> None:
    raise _Stop


def main() -> None:
    cfg = json.loads(sys.argv[1])
    report_fd = cfg["report_fd"]
    os.set_inheritable(report_fd, False)  # the worker's exec must not carry the report channel
    start = time.monotonic()
    signal.signal(signal.SIGTERM, _on_term)
    protections = ["separate_process", "resource_limits", "clean_environment", "fresh_workdir", "no_new_privileges"]
    notes: list[str] = []
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    protections.append("kill_on_exit")
    ns: list[str] = []
    if cfg["use_namespaces"]:
        in_userns = _unshare(ns, notes)
    else:
        in_userns = False
        notes.append("namespaces turned off (use_namespaces=False)")
    protections += ns
    drop_to: int | None = None
    if os.geteuid() == 0 and not in_userns:
        # A private filesystem (built by init) binds the interpreter where any uid can reach it.
        reachable = cfg["use_namespaces"] or all(map(_world_usable, [cfg["python"], *cfg["system_dirs"]]))
        if reachable:
            drop_to = _pick_uid()
        else:
            notes.append("runs as root: the interpreter lies where an unprivileged user cannot reach it")
    nproc = cfg["limits"]["max_processes"]
    if drop_to is None and not in_userns and os.geteuid() != 0:
        # Without a fresh uid or user namespace RLIMIT_NPROC counts all of the user's processes.
        nproc += sum(1 for p in os.listdir("/proc") if p.isdigit() and _proc_uid(p) == os.getuid())
    if in_userns or os.geteuid() != 0:
        protections.append("process_limit")  # root ignores RLIMIT_NPROC; a fresh uid is reported by init
    if cfg["strict"] and "network_namespace" not in ns:
        _report(report_fd, refused="no network isolation: " + "; ".join(notes), protections=protections, notes=notes)
        return
    _report(report_fd, protections=protections, notes=notes)
    deadline = start + cfg["limits"]["wall_seconds"]
    init_pid = os.fork()
    if init_pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _init(cfg, report_fd, ns, drop_to, nproc)
    timed_out = stopped = False
    try:
        timed_out = not _wait(init_pid, deadline)
    except _Stop:
        stopped = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Killing pid 1 of a pid namespace kills all of it; without one we hunt the run's processes down ourselves.
    leftovers = _kill_everything(drop_to)
    _reap()
    _report(report_fd, timed_out=timed_out, stopped=stopped, leftovers_killed=leftovers)


def _proc_uid(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


if __name__ == "__main__":
    main()
