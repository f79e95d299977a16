"""The settings of a FLEX step, one model per verb, and the single source of every default.

`flex learn`, `flex eval` and `flex solve` take each field as an option of the same name (`rollouts` is
``--rollouts``, `budget_tokens` is ``--budget-tokens``), and `flexlearn.learn`, `evaluate` and `solve` take it as a
keyword of the same name, both with the default written here; `tests/test_settings_parity.py` fails when either
side gains, loses or renames one, or disagrees on a default. A field's description is the CLI option's help.

A default that depends on the model (``None`` for `rollouts`, `rounds`, `explore_shots`, `guide_at`) is resolved
here too, against the actor (`LearnSettings.config`, `resolve_guide_at`), so no entry point decides it on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flexlearn.agents.tools import parse_tools
from flexlearn.errors import ConfigError
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.config import LearnConfig
from flexlearn.loop.episode import check_guide_at
from flexlearn.loop.evaluate import EvalConfig, Mode, parse_modes
from flexlearn.loop.executor import check_executor, executor_name
from flexlearn.loop.explore import ExploreConfig, exploration_defaults
from flexlearn.models.base import ChatModel, GenerationOptions
from flexlearn.retrieval import DEFAULT_RETRIEVER
from flexlearn.retrieval.registry import check_retriever


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def of(cls, **values: Any) -> Self:
        """The settings from keyword values, or ConfigError naming each bad one (as the CLI prints errors)."""
        try:
            return cls(**values)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'settings'}: {_reason(x)}" for x in e.errors())
            raise ConfigError(problems) from None

    @classmethod
    def pick(cls, values: dict[str, Any]) -> Self:
        """The settings among `values` (a function's `locals()`: every field must be there), checked as `of`."""
        return cls.of(**{name: values[name] for name in cls.model_fields})

    def values(self) -> dict[str, Any]:
        """The fields as keywords, for the public function of the same verb."""
        return {name: getattr(self, name) for name in type(self).model_fields}


def _reason(error: Any) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _retriever(value: str) -> str:
    check_retriever(value)  # ConfigError, as from every other entry point
    return value


def _guide_at(value: str | None) -> str | None:
    return None if value is None else check_guide_at(value)


# Field types that check their values (a bad one raises ConfigError with the same words everywhere).
Tools = Annotated[tuple[str, ...], BeforeValidator(parse_tools)]
RetrieverName = Annotated[str, AfterValidator(_retriever)]
ExecutorName = Annotated[str, BeforeValidator(executor_name)]
GuideAt = Annotated[str | None, AfterValidator(_guide_at)]

# The fields shared by more than one verb, declared once.
_CONCURRENCY = Field(
    4,
    ge=1,
    description="Model calls in flight at once (each model's limit). learn works on four times as many problems to "
    "keep them busy; eval, scaling, inherit and demo on as many.",
)
_TOOLS = Field(
    (),
    description="Tools of the actor, comma-separated: python (code run in a sandbox), experience (search the "
    "library). Default: none, one reply per attempt.",
)
_RETRIEVER = Field(
    DEFAULT_RETRIEVER,
    description="How experience is found: tantivy (an index beside the library, milliseconds at a million "
    "entries) or bm25 (SQLite FTS5). Default: tantivy, falling back to bm25 where it is not installed.",
)
_TEMPERATURE = Field(None, description="Actor sampling temperature. Default: the model's own.")
_MAX_TOKENS = Field(
    None, ge=1, description="Cap on each actor reply (base models in chat mode ramble). Default: the backend's."
)
_BUDGET = Field(
    DEFAULT_LIMITS.retrieval_budget_tokens, ge=50, description="Token budget for the experience retrieved per question."
)
_GUIDE_AT = Field(
    None,
    description="Where flex mode uses what it retrieves: prompt (the actor's context, the paper's way) or review "
    "(the principles and patterns go to a critic that checks each attempt, up to the agent's rounds; the actor "
    "sees worked cases only). Default: review for an embedded chat model (local:qwen2.5-coder-*), prompt otherwise.",
)


class LearnSettings(Settings):
    """How `learn` explores each training problem and folds what it teaches into the library."""

    rollouts: int | None = Field(
        None, ge=1, description="Rollouts per problem. Default: 3, as in the paper; 1 for an embedded chat model."
    )
    rounds: int | None = Field(
        None, ge=1, description="Actor/critic rounds per rollout. Default: 5 as in the paper; 2 for local models."
    )
    all_rollouts: bool = Field(False, description="Run every rollout even after a success.")
    explore_shots: int | None = Field(
        None,
        ge=0,
        description="Worked training examples in the actor's prompt while exploring. Default: 3 for base models, "
        "0 otherwise.",
    )
    concurrency: int = _CONCURRENCY
    explore_with_library: bool = Field(
        False,
        description="Show each problem's actor what the library holds so far (as flex mode does), and count its "
        "verdicts as helped/hurt for those entries. Default: explore without the library.",
    )
    blind_critic: bool = Field(
        False,
        description="The critic sees only the verdict, never the reference answer. Default: it sees the reference, "
        "and any form of the answer in its feedback is masked.",
    )
    distiller_slots: bool = Field(
        False,
        description="Hold a chat-model distiller to one principle and one pattern per zone (measured worse with "
        "Qwen2.5-Coder 1.5B on GSM8k; README, 'Does learning help?').",
    )
    tools: Tools = _TOOLS
    retriever: RetrieverName = _RETRIEVER
    temperature: float | None = _TEMPERATURE
    max_tokens: int | None = _MAX_TOKENS
    executor: ExecutorName = Field(
        "inprocess",
        description="Where each problem's exploration and distillation run: inprocess, or ray (as tasks on a Ray "
        "cluster, which rebuilds the models from their URIs; needs the ray extra). The updater's decisions and every "
        "write to the library stay in this process either way.",
    )
    ray_address: str | None = Field(
        None,
        description="With --executor ray: the cluster to run on (its head's host:port, auto, or local for a new "
        "local instance). Default: RAY_ADDRESS, else a cluster started on this machine, else a new local instance "
        "for the run.",
    )

    @model_validator(mode="after")
    def _ray_options(self) -> Self:
        check_executor(self.executor, ray_address=self.ray_address)
        return self

    def config(self, actor: ChatModel) -> LearnConfig:
        """The learn loop's configuration, with the defaults that depend on `actor` resolved."""
        defaults = exploration_defaults(actor)
        return LearnConfig(
            explore=ExploreConfig(
                rollouts=self.rollouts or defaults.rollouts,
                rounds=self.rounds or defaults.rounds,
                stop_on_success=not self.all_rollouts,
                shots=defaults.shots if self.explore_shots is None else self.explore_shots,
                blind_critic=self.blind_critic,
                tools=self.tools,
                actor=GenerationOptions(temperature=self.temperature, max_tokens=self.max_tokens),
            ),
            concurrency=self.concurrency,
            retriever=self.retriever,
            explore_with_library=self.explore_with_library,
            distiller_slots=self.distiller_slots,
            executor=self.executor,
            ray_address=self.ray_address,
        )


class EvalSettings(Settings):
    """How `evaluate` runs the paper's modes."""

    modes: tuple[Mode, ...] | None = Field(
        None,
        description="Comma-separated: vanilla, icl, agent, flex. Default: every mode the inputs allow (icl with "
        "--train, flex with --library). Beside vanilla, on an embedded model at temperature 0, agent's first attempt "
        "(vanilla's request) takes vanilla's reply instead of asking again; its items still count that call.",
    )
    icl_k: int = Field(3, ge=1, description="Worked examples in icl mode.")
    agent_rounds: int | None = Field(
        None,
        ge=1,
        description="Actor/critic rounds in agent mode, and in flex mode at review. Default: 3; 2 for a local model "
        "(as learning's rounds).",
    )
    budget_tokens: int = _BUDGET
    retriever: RetrieverName = _RETRIEVER
    min_shared: int = Field(
        0, ge=0, description="Show flex mode only the hits that share this many content words with the question."
    )
    case_min_shared: int | None = Field(
        None,
        ge=0,
        description="The same for worked cases alone. Default: 5 for a chat actor (or half the question's content "
        "words if fewer), 0 for a base model.",
    )
    guide_at: GuideAt = _GUIDE_AT
    concurrency: int = _CONCURRENCY
    seed: int = Field(0, description="Seed for the choice of ICL examples and the bootstrap.")
    repeats: int = Field(1, ge=1, description="Samples per problem: pass@1 averaged over them (set --temperature > 0).")
    temperature: float | None = _TEMPERATURE
    max_tokens: int | None = _MAX_TOKENS
    tools: Tools = _TOOLS

    @field_validator("modes", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> tuple[Mode, ...] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return tuple(parse_modes(value))
        if isinstance(value, Sequence) and not value:
            raise ValueError("no evaluation mode given; e.g. vanilla,icl,agent,flex")
        return tuple(parse_modes(",".join(str(getattr(m, "value", m)) for m in value)))

    def mode_list(self, *, library: bool, train: bool) -> list[Mode]:
        """The modes to run: those asked for, or (by default) every mode the inputs allow."""
        if self.modes is not None:
            return list(self.modes)
        allowed = {Mode.VANILLA: True, Mode.ICL: train, Mode.AGENT: True, Mode.FLEX: library}
        return [mode for mode, ok in allowed.items() if ok]

    def config(self) -> EvalConfig:
        """The evaluation loop's configuration."""
        return EvalConfig(
            icl_k=self.icl_k,
            agent_rounds=self.agent_rounds,
            budget_tokens=self.budget_tokens,
            retriever=self.retriever,
            min_shared=self.min_shared,
            case_min_shared=self.case_min_shared,
            guide_at=self.guide_at,
            concurrency=self.concurrency,
            seed=self.seed,
            repeats=self.repeats,
            tools=self.tools,
            actor=GenerationOptions(temperature=self.temperature, max_tokens=self.max_tokens),
        )


class SolveSettings(Settings):
    """How `solve` answers one question, as flex mode answers an evaluation item."""

    budget_tokens: int = _BUDGET
    retriever: RetrieverName = _RETRIEVER
    guide_at: GuideAt = _GUIDE_AT
    review_rounds: int | None = Field(
        None,
        ge=1,
        description="Attempts at review (guide_at review), as agent_rounds in eval. Default: 3; 2 for a local model.",
    )
    temperature: float | None = _TEMPERATURE
    max_tokens: int | None = _MAX_TOKENS
    tools: Tools = _TOOLS

    @property
    def actor(self) -> GenerationOptions:
        return GenerationOptions(temperature=self.temperature, max_tokens=self.max_tokens)


LEARN = LearnSettings()
EVAL = EvalSettings()
SOLVE = SolveSettings()
