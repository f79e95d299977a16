"""The trajectory: what one problem's exploration produced, step by step. Plain data shared by the loop that
writes it (`loop/explore.py`), the distiller that learns from it and the run records that keep it."""

from __future__ import annotations

from dataclasses import dataclass, field

from flexlearn.models.base import Usage


@dataclass
class StepRecord:
    """One actor attempt: its text, the answer the task read from it, the verdict and the critic's feedback."""

    rollout: int
    round: int
    attempt: str
    extracted: str | None
    correct: bool
    feedback: str = ""
    # Why the critic's feedback is the generic stand-in, when it is: its reply was unusable (malformed after its
    # retries), copied the prompt's example, or would have leaked the answer. "" when the feedback is its own.
    critic_error: str = ""


@dataclass
class Trajectory:
    problem_id: str
    steps: list[StepRecord]
    usage: Usage
    calls: int
    # Ids of the library entries the actor was shown (exploration under the library); empty otherwise.
    guidance: list[str] = field(default_factory=list)

    def outcomes(self) -> list[bool]:
        """The verdicts that speak for the shown experience: each rollout's first attempt, which the library
        alone conditioned (later rounds also read the critic's feedback). Empty without guidance."""
        return [s.correct for s in self.steps if s.round == 0] if self.guidance else []

    @property
    def solved(self) -> bool:
        return any(s.correct for s in self.steps)

    def to_dict(self) -> dict[str, object]:
        return {
            "problem_id": self.problem_id,
            "solved": self.solved,
            "calls": self.calls,
            "usage": vars(self.usage),
            "steps": [vars(s) for s in self.steps],
            "guidance": list(self.guidance),
        }
