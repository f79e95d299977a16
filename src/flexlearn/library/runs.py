"""The learn-run ledger: each run's config and status, and where it stands on every problem, so that an
interrupted run resumes where it stopped."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from flexlearn.errors import LibraryError
from flexlearn.library.base import LibraryBase
from flexlearn.library.rows import dumps


@dataclass
class RunInfo:
    """One run as `flex library runs` lists it. `status` is `done` once finished; a run still `running` has not
    finished: it is in progress in some process, or was interrupted and can be resumed."""

    run_id: str
    kind: str
    status: str
    task: str
    source: str
    total: int  # problems the run was started on
    solved: int
    unsolved: int
    failed: int  # failed at the model: retried on resume
    created_at: float
    updated_at: float


class Runs(LibraryBase):
    """Run records (a mixin of `Library`)."""

    def runs(self, kind: str | None = None) -> list[RunInfo]:
        """Every run (of one kind), oldest first, with where it stands."""
        sql = (
            "SELECT r.*, count(CASE WHEN p.status = 'solved' THEN 1 END) AS solved,"
            " count(CASE WHEN p.status = 'unsolved' THEN 1 END) AS unsolved,"
            " count(CASE WHEN p.status = 'failed' THEN 1 END) AS failed"
            " FROM runs r LEFT JOIN run_problems p ON p.run_id = r.run_id"
        )
        params: list[str] = []
        if kind is not None:
            sql += " WHERE r.kind = ?"
            params.append(kind)
        found = []
        with self.snapshot():
            for row in self._conn.execute(sql + " GROUP BY r.run_id ORDER BY r.created_at, r.rowid", params):
                config = json.loads(row["config"])
                found.append(
                    RunInfo(
                        run_id=row["run_id"],
                        kind=row["kind"],
                        status=row["status"],
                        task=str(config.get("task", "")),
                        source=str(config.get("source", "")),
                        total=len(config.get("problem_ids", [])),
                        solved=row["solved"] or 0,
                        unsolved=row["unsolved"] or 0,
                        failed=row["failed"] or 0,
                        created_at=row["created_at"],
                        updated_at=row["updated_at"],
                    )
                )
        return found

    def resumable_run(
        self,
        kind: str,
        *,
        task: str,
        problem_ids: list[str],
        run_id: str | None = None,
        problems_digest: str | None = None,
    ) -> str:
        """The run `--resume` continues: `run_id` when given, else the newest unfinished run of `kind` started on
        the same task and problems (several learners may share a library, each with its own run). Given
        `problems_digest` (`tasks.base.problems_digest`), a run that recorded another digest is not the same problems
        even under the same ids: two learners' train.jsonl files in two folders. LibraryError, saying what to do,
        when there is none or the given one does not fit."""

        def other_problems(config: dict[str, Any]) -> bool:
            recorded = config.get("problems_digest")
            return problems_digest is not None and recorded is not None and recorded != problems_digest

        if run_id is not None:
            config = self.run_config(run_id)
            if config is None:
                raise LibraryError(
                    f"no run {run_id!r} in {self.location}; `flex library runs {self.location}` lists them"
                )
            if self.run_status(run_id) == "done":
                raise LibraryError(f"run {run_id} in {self.location} is finished; there is nothing to resume")
            if config.get("task") != task or config.get("problem_ids") != problem_ids:
                raise LibraryError(
                    f"cannot resume run {run_id}: it was started with task {config.get('task')!r} on "
                    f"{config.get('source')!r}; run with the same task and training file"
                )
            if other_problems(config):
                raise LibraryError(
                    f"cannot resume run {run_id}: it was started on {config.get('source')!r} with the same problem "
                    "ids but other questions or answers (another file of that name?); run with the same training file"
                )
            return run_id
        rows = self._conn.execute(
            "SELECT run_id, config FROM runs WHERE kind = ? AND status != 'done' ORDER BY created_at DESC, rowid DESC",
            (kind,),
        )
        for row in rows:
            config = json.loads(row["config"])
            if config.get("task") == task and config.get("problem_ids") == problem_ids and not other_problems(config):
                return row["run_id"]
        raise LibraryError(
            f"nothing to resume: {self.location} has no unfinished {kind} run of task {task!r} on these problems "
            f"(`flex library runs {self.location}` lists its runs); drop --resume to start a new run"
        )

    def begin_run(self, run_id: str, *, kind: str, config: dict[str, Any]) -> None:
        """Record a run, or, when it exists already (a resume), just touch its updated_at."""
        now = time.time()
        with self.transaction():
            self._conn.execute(
                "INSERT INTO runs(run_id, kind, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET updated_at = excluded.updated_at",
                (run_id, kind, dumps(config), now, now),
            )
        self.checkpoint()  # the run is listed, and resumable, whatever happens to the -wal file later

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        """The config the run began with, or None for an unknown run."""
        row = self._conn.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def latest_run(self, kind: str) -> str | None:
        """The most recently begun run of this kind, or None."""
        row = self._conn.execute(
            "SELECT run_id FROM runs WHERE kind = ? ORDER BY created_at DESC, rowid DESC LIMIT 1", (kind,)
        ).fetchone()
        return None if row is None else row[0]

    def finish_run(self, run_id: str, status: str = "done") -> None:
        """Set a run's final status."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?", (status, time.time(), run_id)
            )
            if cur.rowcount == 0:
                raise LibraryError(f"no run {run_id!r} in {self.location}")

    def run_status(self, run_id: str) -> str | None:
        """'running' until finish_run sets another status; None for an unknown run."""
        row = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def record_problem(self, run_id: str, problem_id: str, *, status: str, trajectory: dict[str, Any]) -> None:
        """Save (or replace) where a run stands on one problem, so a resumed run can skip or continue it."""
        with self.transaction():
            if self.run_status(run_id) is None:
                raise LibraryError(f"no run {run_id!r} in {self.location}: call begin_run first")
            self._conn.execute(
                "INSERT INTO run_problems(run_id, problem_id, status, trajectory, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id, problem_id) DO UPDATE SET status = excluded.status,"
                " trajectory = excluded.trajectory, updated_at = excluded.updated_at",
                (run_id, problem_id, status, dumps(trajectory), time.time()),
            )

    def problem_status(self, run_id: str) -> dict[str, str]:
        """Each recorded problem of the run and its status, in the order first recorded."""
        rows = self._conn.execute(
            "SELECT problem_id, status FROM run_problems WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        return dict(rows.fetchall())

    def trajectory(self, run_id: str, problem_id: str) -> dict[str, Any] | None:
        """The trajectory last recorded for this problem in this run, or None."""
        row = self._conn.execute(
            "SELECT trajectory FROM run_problems WHERE run_id = ? AND problem_id = ?", (run_id, problem_id)
        ).fetchone()
        return None if row is None else json.loads(row[0])
