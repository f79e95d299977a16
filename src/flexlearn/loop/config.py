"""The learn run's configuration: exploration, how many problems at once, and how lessons are decided."""

from __future__ import annotations

from dataclasses import dataclass, field

from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.explore import ExploreConfig
from flexlearn.models.base import GenerationOptions
from flexlearn.retrieval import DEFAULT_RETRIEVER


@dataclass
class LearnConfig:
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    concurrency: int = 4
    # Problems worked on at once (0: PROBLEMS_PER_SLOT x `concurrency`). More problems than model calls in flight
    # keeps every call slot busy: a problem waits on its own chain of calls, and one waiting for its turn at the
    # writer or on a long chain would otherwise leave a slot idle. The model itself still sees at most
    # `concurrency` calls at once.
    problems_in_flight: int = 0
    neighbours: int = 5
    # How the updater finds a candidate's neighbours, by name (`flexlearn.retrieval.retriever_names()`).
    retriever: str = DEFAULT_RETRIEVER
    distiller: GenerationOptions = field(default_factory=GenerationOptions)
    updater: GenerationOptions = field(default_factory=GenerationOptions)
    # Stop the run when this many problems in a row fail at the model (an unreachable server, a bad key).
    max_consecutive_failures: int = 5
    # Explore under the library as it grows (the paper's pi(.|E)): each problem's actor sees what earlier problems
    # taught, and the verdicts count as helped/hurt for the entries it was shown.
    explore_with_library: bool = False
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens
    # Hold a chat-model distiller to fixed slots (a principle and a pattern per zone; `agents.distiller.SLOTS`).
    # Off by default: with Qwen2.5-Coder 1.5B the library learned that way made flex 14 points worse than vanilla
    # on GSM8k (README, "Does learning help?").
    distiller_slots: bool = False
    # Where each problem's exploration and distillation run (`flexlearn.loop.executor`): "inprocess", or "ray"
    # (tasks on a Ray cluster at `ray_address`; None: Ray's own choice, RAY_ADDRESS or a cluster started on this
    # machine, else a local instance for the run). The updater's decisions and every write stay here.
    executor: str = "inprocess"
    ray_address: str | None = None
