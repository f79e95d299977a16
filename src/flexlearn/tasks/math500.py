"""MATH-500: the 500-problem MATH test subset of "Let's Verify Step by Step", scored like `MathTask` (math-verify).

Records have "problem", "solution", "answer" (LaTeX), "subject", "level" (1-5) and "unique_id" (e.g.
"test/precalculus/807.json"). `Problem.id` is the "unique_id" (or the loader's id for a record without one);
"subject", "level" and "solution" stay in `Problem.meta`, for per-subject and per-level breakdowns and worked
examples.
"""

from __future__ import annotations

from pathlib import Path

from flexlearn.tasks.base import Problem
from flexlearn.tasks.loader import load_problems
from flexlearn.tasks.math import MathTask

_UNIQUE_ID = "unique_id"


class Math500Task(MathTask):
    """MATH-500 problems: `MathTask`'s extraction and equivalence scoring, ids from "unique_id"."""

    name = "math500"

    def load(self, path: str | Path) -> list[Problem]:
        """Read a MATH-500 JSONL file. Raises InputError naming the file and line on bad input, including a
        "unique_id" that is not a non-empty string or is used twice."""
        used: set[str] = set()

        def take_unique_id(problem: Problem) -> str | None:
            # The loader's per-problem check runs on each problem as it is built, so a bad or repeated unique_id
            # is reported with its line. It is also where the id is set, as load_problems only knows "id".
            if _UNIQUE_ID not in problem.meta:
                return None
            unique_id = problem.meta[_UNIQUE_ID]
            if not isinstance(unique_id, str) or not unique_id.strip():
                return f"field {_UNIQUE_ID!r} must be a non-empty string"
            if unique_id in used:
                return f"duplicate {_UNIQUE_ID} {unique_id!r}"
            used.add(unique_id)
            problem.id = unique_id
            del problem.meta[_UNIQUE_ID]
            return None

        return load_problems(path, question_key=("problem", "question"), check=take_unique_id)
