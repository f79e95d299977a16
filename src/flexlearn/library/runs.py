"""The learn-run ledger: each run's config and status, and where it stands on every problem, so that an
interrupted run resumes where it stopped."""

from __future__ import annotations

import json
import time
from typing import Any

from flexlearn.errors import LibraryError
from flexlearn.library.base import LibraryBase
from flexlearn.library.rows import dumps


class Runs(LibraryBase):
    """Run records (a mixin of `Library`)."""

    def begin_run(self, run_id: str, *, kind: str, config: dict[str, Any]) -> None:
        """Record a run, or, when it exists already (a resume), just touch its updated_at."""
        now = time.time()
        with self.transaction():
            self._conn.execute(
                "INSERT INTO runs(run_id, kind, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET updated_at = excluded.updated_at",
                (run_id, kind, dumps(config), now, now),
            )

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
                raise LibraryError(f"no run {run_id!r} in {self.path}")

    def run_status(self, run_id: str) -> str | None:
        """'running' until finish_run sets another status; None for an unknown run."""
        row = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else row[0]

    def record_problem(self, run_id: str, problem_id: str, *, status: str, trajectory: dict[str, Any]) -> None:
        """Save (or replace) where a run stands on one problem, so a resumed run can skip or continue it."""
        with self.transaction():
            if self.run_status(run_id) is None:
                raise LibraryError(f"no run {run_id!r} in {self.path}: call begin_run first")
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
