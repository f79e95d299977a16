"""Several writers applying updater batches to one library at once, each a process with its own connection (on a
PostgreSQL server they could as well be on other hosts): nothing is lost and nothing is duplicated, because every
batch decides and writes under the library's writer lock (BEGIN IMMEDIATE in a file, the server's advisory lock)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from flexlearn.experience import Action
from flexlearn.library.store import Library

WRITERS = 3
ROUNDS = 8
BATCH = 4

# Each writer applies the same batches: round i adds lessons i .. i+3, so every lesson is asked for by every writer
# and by up to four rounds. The duplicate check is slowed down (a sleep after finding no twin) to widen the window in
# which, without the lock, two writers would both find none and both add.
_WRITER = textwrap.dedent(
    f"""
    import sys, time
    from pathlib import Path
    from flexlearn.experience import Action, Experience, Level, Zone
    from flexlearn.library import batch
    from flexlearn.library.batch import Change
    from flexlearn.library.store import Library

    target, folder, tag = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    real_twin = batch.twin

    def slow_twin(library, exp):
        found = real_twin(library, exp)
        if found is None:
            time.sleep(0.01)
        return found

    batch.twin = slow_twin
    with Library.open(target) as lib:
        (folder / f"ready-{{tag}}").touch()
        while len(list(folder.glob("ready-*"))) < {WRITERS}:
            time.sleep(0.005)
        for i in range({ROUNDS}):
            changes = [
                Change(
                    Experience(zone=Zone.GOLDEN, level=Level.CASE, title="shared", content=f"shared lesson {{j}}"),
                    Action.ADD,
                    reason=f"{{tag}} round {{i}}",
                )
                for j in range(i, i + {BATCH})
            ]
            lib.apply(changes, run_id=tag, problem_id=f"p{{i}}")
    """
)


def test_writers_at_once_lose_nothing_and_duplicate_nothing(library_target: str | Path, tmp_path: Path) -> None:
    Library.open(library_target).close()  # created before the writers start: they race on the batches alone
    tags = [f"writer{n}" for n in range(WRITERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(library_target), str(tmp_path), tag], stderr=subprocess.PIPE, text=True
        )
        for tag in tags
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    with Library.open(library_target) as lib:
        entries = lib.list()
        events = lib.events()
    lessons = ROUNDS + BATCH - 1
    # Nothing duplicated: one entry per lesson, whichever writer got there first.
    assert sorted(e.content for e in entries) == sorted(f"shared lesson {j}" for j in range(lessons))
    # Nothing lost: every change of every batch is logged, once, as the add or as a discard naming the entry.
    assert len(events) == WRITERS * ROUNDS * BATCH
    assert Counter((ev.run_id, ev.problem_id) for ev in events) == {
        (tag, f"p{i}"): BATCH for tag in tags for i in range(ROUNDS)
    }
    adds = [ev for ev in events if ev.action == Action.ADD]
    assert sorted(ev.experience_id for ev in adds) == sorted(e.id for e in entries)
    ids = {e.id for e in entries}
    for ev in events:
        if ev.action == Action.DISCARD:
            assert ev.reason.startswith("discarded: exact duplicate of ")
            assert ev.reason.removeprefix("discarded: exact duplicate of ") in ids
