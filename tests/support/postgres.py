"""A real, throwaway PostgreSQL server for tests: initdb into a fresh folder, `pg_ctl start` on a free port of
127.0.0.1 (trust authentication, fsync off: nothing here outlives the session), one new database per library, and
`pg_ctl stop` at the end. No mocking: the tests talk to the server over TCP with psycopg, as a user's library would.

The server is Debian's (or any) PostgreSQL install found by `FLEX_PG_BINDIR`, `pg_config --bindir`, or
/usr/lib/postgresql/*/bin. PostgreSQL refuses to run as root, so under root the server runs as the unprivileged
`postgres` user (the one Debian's package creates), falling back to `nobody`, through `runuser`. When no server can
be started the reason is kept in `Unavailable`, and the tests that need one skip with it.

Standalone, from the repository root: ``python -m tests.support.postgres`` starts one, prints a URL of a fresh
database, and stops it on Enter.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

STARTUP_TIMEOUT_S = 60


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def find_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres, or Unavailable."""
    candidates: list[str] = []
    if os.environ.get("FLEX_PG_BINDIR"):
        candidates.append(os.environ["FLEX_PG_BINDIR"])
    if shutil.which("pg_config"):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for folder in candidates:
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise Unavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: install Debian's postgresql package, or "
        "set FLEX_PG_BINDIR to the folder holding them"
    )


def _version(folder: str) -> int:
    name = Path(folder).parent.name
    return int(name) if name.isdigit() else 0


def _run_as() -> list[str]:
    """The command prefix that runs the server's tools as an unprivileged user: [] unless we are root."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("runuser"):
        raise Unavailable("running as root, and PostgreSQL refuses root: no runuser to run it as another user")
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
    raise Unavailable("running as root, and PostgreSQL refuses root: no 'postgres' or 'nobody' user to run it as")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One running server. `url(database)` names a database on it; `new_database()` creates an empty one."""

    USER = "flex"

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self._as = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="flex-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._names = itertools.count(1)
        self._started = False
        if self._as:
            user = self._as[2]
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        try:
            self._tool(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", self.USER, "-E", "UTF8", "--locale=C.UTF-8",
                "--no-sync",
            )  # fmt: skip
            self._tool(
                "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t",
                str(STARTUP_TIMEOUT_S), "-o",
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
                "-c synchronous_commit=off -c max_connections=200",
                "start",
            )  # fmt: skip
            self._started = True
        except Unavailable:
            self.stop()
            raise

    def _tool(self, name: str, *args: str) -> None:
        cmd = [*self._as, str(self.bindir / name), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S + 30)
        except (OSError, subprocess.SubprocessError) as e:
            raise Unavailable(f"{name} could not run: {e}") from e
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise Unavailable(f"{name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]} {tail}".strip())

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "lib") -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `new_database` (its connections are closed first)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder. Safe to call twice."""
        if self._started:
            self._started = False
            with contextlib.suppress(Unavailable):
                self._tool("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> PostgresServer:
    """A started server, or Unavailable saying why not (no binaries, no user to run them as, no psycopg)."""
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"psycopg is not installed ({e}): pip install -e '.[postgres]'") from e
    return PostgresServer()


if __name__ == "__main__":
    server = start()
    try:
        print(server.new_database(), flush=True)
        input("PostgreSQL running; Enter stops it\n")
    finally:
        server.stop()
