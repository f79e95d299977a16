"""The task seam: how problems are loaded, shown to the actor, and scored."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class Problem:
    """One checkable problem. `answer` is the reference (ground truth) as given in the data file."""

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def category(self) -> str:
        """The kind of problem the data says this is: its "category" field (or MATH's "subject" or "type"), else
        "". Learning titles the lessons of a problem with it, and guidance prefers worked cases of the same kind."""
        for key in ("category", "subject", "type"):
            value = self.meta.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return ""


def problems_digest(problems: Sequence[Problem]) -> str:
    """A fingerprint of `problems` (ids, questions and answers, in order): a learn run records it, so that `--resume`
    continues a run on these very problems, not another learner's run on a file of the same name whose problems
    have the same ids (`train.jsonl:1`...) and other questions."""
    data = json.dumps([[p.id, p.question, p.answer] for p in problems], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass
class Score:
    """The task's verdict on one attempt. `value` is in [0, 1]; `correct` is the pass/fail used for accuracy.
    `extracted` is what was read out of the reply as the final answer (None when nothing could be)."""

    correct: bool
    value: float
    extracted: str | None
    detail: str = ""
    # Structured extras a set-level metric needs (a retrosynthesis rank, a protein batch's predicted scores).
    # JSON-serialisable: it is stored with each evaluated item so reports rebuild without the model.
    data: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """A kind of problem. Built-ins live beside this module; users register theirs by entry point
    (group `flexlearn.tasks`) or pass `module:Class`."""

    name: str
    # How the actor is asked to finish its reply, e.g. "Finish with: Final answer: \\boxed{...}".
    answer_format: str

    def load(self, path: str | Path) -> list[Problem]:
        """Read a JSONL file. Raises InputError naming the file and line on bad input."""
        ...

    def render(self, problem: Problem) -> str:
        """The question text as the actor sees it."""
        ...

    def extract_answer(self, reply: str) -> str | None:
        """The final answer in a model reply, or None."""
        ...

    def score(self, reply: str, problem: Problem) -> Score:
        """Compare the reply's final answer with the reference."""
        ...

    def format_answer(self, problem: Problem) -> str:
        """The reference written the way a correct reply would end (used for ICL worked examples)."""
        ...


@runtime_checkable
class MetricTask(Task, Protocol):
    """A task whose headline number is not mean accuracy over items: Spearman correlation per assay
    (ProteinGym), top-k exact match with invalid SMILES counted apart (retrosynthesis), ...

    `aggregate` gets every evaluated item's problem and score and returns named values, one of them named
    `metric` (the headline). Evaluation bootstraps it over problems for a confidence interval, so it must
    accept any multiset of items (resampled problems repeat)."""

    metric: str

    def aggregate(self, items: Sequence[tuple[Problem, Score]]) -> dict[str, float]: ...


def critic_reference(task: Task, problem: Problem) -> str | None:
    """What the exploring critic may see of the reference answer: `problem.answer`, unless the task defines
    `critic_reference(problem)` (e.g. to return None where the reference is a blob the critic would only parrot,
    or where no span check could catch it being passed on)."""
    own = getattr(task, "critic_reference", None)
    return own(problem) if callable(own) else problem.answer


def reference_text(task: Task, problem: Problem) -> str:
    """The reference as a reader should see it: the worked solution the loader kept (`meta["solution"]`, e.g.
    GSM8k's without its calculator annotations) ending the way the task wants, else the answer as given."""
    solution = str(problem.meta.get("solution", "")).strip()
    return f"{solution}\n{task.format_answer(problem)}" if solution else problem.answer
