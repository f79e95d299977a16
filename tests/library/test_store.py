"""The Library as a whole: its summary, its transactions across connections and processes, its meta."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flexlearn.errors import LibraryError
from flexlearn.experience import Level, Zone
from flexlearn.library.store import Library
from tests.library.builders import make


def test_stats_has_every_key_even_when_empty(lib: Library) -> None:
    assert lib.stats() == {
        "total": 0,
        "by_zone": {"golden": 0, "warning": 0},
        "by_level": {"principle": 0, "pattern": 0, "case": 0},
        "by_zone_level": {
            "golden": {"principle": 0, "pattern": 0, "case": 0},
            "warning": {"principle": 0, "pattern": 0, "case": 0},
        },
        "events": {"add": 0, "merge": 0, "discard": 0, "edit": 0, "delete": 0, "import": 0, "approve": 0},
        "quarantined": 0,
        "schema_version": 3,
    }
    lib.add(make("a", zone=Zone.WARNING, level=Level.CASE), reason="r")
    lib.discard(make("b"), reason="dup")
    stats = lib.stats()
    assert stats["total"] == 1 and stats["by_zone"] == {"golden": 0, "warning": 1}
    assert stats["by_zone_level"]["warning"]["case"] == 1 and stats["by_level"]["case"] == 1
    assert stats["events"]["add"] == 1 and stats["events"]["discard"] == 1


# -- transactions ------------------------------------------------------------------------------------------


def test_a_failed_transaction_leaves_nothing(lib: Library) -> None:
    with pytest.raises(RuntimeError), lib.transaction():
        lib.add(make("will vanish"), reason="r")
        lib.begin_run("run1", kind="learn", config={})
        lib.record_problem("run1", "p1", status="done", trajectory={})
        raise RuntimeError("boom")
    assert lib.count() == 0 and lib.events() == [] and lib.run_config("run1") is None
    lib.add(make("still writable"), reason="r")
    assert lib.count() == 1


def test_a_failed_inner_block_undoes_only_itself(lib: Library) -> None:
    with lib.transaction():
        kept = lib.add(make("kept"), reason="r")
        with pytest.raises(LibraryError):
            lib.add(make("bad", parent_id="missing"), reason="r")
        with pytest.raises(RuntimeError), lib.transaction():
            lib.add(make("inner"), reason="r")
            raise RuntimeError
    assert [e.id for e in lib.list()] == [kept.id]
    assert len(lib.events()) == 1


def test_writes_are_visible_to_another_connection_only_after_commit(library_target: str | Path) -> None:
    with Library.open(library_target) as writer, Library.open(library_target) as reader:
        with writer.transaction():
            writer.add(make("pending"), reason="r")
            assert reader.count() == 0
        assert reader.count() == 1


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from flexlearn.experience import Experience, Level, Zone
    from flexlearn.library.store import Library

    target, folder, tag = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    # Start together: each says it is ready, then waits for the other.
    (folder / f"ready-{tag}").touch()
    while len(list(folder.glob("ready-*"))) < 2:
        time.sleep(0.005)
    with Library.open(target) as lib:
        for i in range(30):
            exp = Experience(zone=Zone.GOLDEN, level=Level.CASE, title=tag, content=f"{tag} lesson {i}")
            with lib.transaction():
                lib.add(exp, reason="concurrent", run_id=tag)
                time.sleep(0.002)  # hold the write lock a little, so the other writer has to wait for it
    """
)


def test_two_processes_can_create_and_write_at_once(library_target: str | Path, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(library_target), str(tmp_path), tag], stderr=subprocess.PIPE, text=True
        )
        for tag in ("alpha", "beta")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with Library.open(library_target) as lib:
        assert lib.count() == 60
        assert len(lib.events()) == 60
        assert len(lib.events(run_id="alpha")) == len(lib.events(run_id="beta")) == 30


# -- meta --------------------------------------------------------------------------------------------------


def test_meta(lib: Library) -> None:
    assert lib.get_meta("task") is None
    lib.set_meta("task", "math")
    lib.set_meta("task", "gsm8k")
    assert lib.get_meta("task") == "gsm8k"
    assert lib.get_meta("schema_version") == "3"
    with pytest.raises(LibraryError):
        lib.set_meta("schema_version", "7")


# -- one file ---------------------------------------------------------------------------------------------------


@pytest.mark.sqlite_only("a file's write-ahead log")
def test_the_file_alone_is_the_whole_library_once_closed(tmp_path: Path) -> None:
    """A reader still open (the retrieval index keeps one) stops SQLite from folding its log into the file at the
    last close; `close` does it, so a copy of the `.flexlib` alone holds everything written."""
    import shutil
    import sqlite3

    path = tmp_path / "lib.flexlib"
    lib = Library.open(path)
    reader = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    reader.execute("SELECT count(*) FROM experiences").fetchone()
    for i in range(20):
        lib.add(make(f"lesson number {i} " * 20), reason="r")
    lib.close()
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    shutil.copy(path, elsewhere / "lib.flexlib")  # the file alone, no -wal beside it
    try:
        with Library.open(elsewhere / "lib.flexlib", create=False) as copy:
            assert copy.count() == 20
    finally:
        reader.close()
