"""Run records: what the loops write to a run directory and what the report reads back, as one set of models.

- `ItemRecord`: one line of `items.jsonl` (one evaluated item, mode and repeat);
- `ModeResult`: one mode's outcome, an entry of `results.json`'s `results` (its items go to `items.jsonl`);
- `Results`: `results.json`; `Scaling` (with `ScalingPoint`, `Fit`): `scaling.json`; `Inherit` (with
  `InheritRow`): `inherit.json`;
- `LibrarySnapshot`: `library.json`, the library as `flexlearn.library.formats.export_json` writes it (with
  `--snapshot`), its entries `ExperienceView`s (`ImportedExperience` when `import_file` reads them back, strictly);
  `LibraryRef`: `library.ref.json`, what runs write by default: where the library is, its content
  hash and stats, and only the entries the run retrieved.

Reading is lenient about absent fields (runs written by older versions lack some) and strict about wrong types,
so that a malformed file fails validation instead of turning into a confusing page. Unknown fields are ignored,
except on the top-level files, whose writers add run metadata freely (`size`, `inherited`, `demo`...).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    computed_field,
    field_validator,
)
from pydantic_core import PydanticCustomError

from flexlearn.experience import Level, Zone
from flexlearn.tasks.base import Score

RESULTS = "results.json"
ITEMS = "items.jsonl"
LIBRARY = "library.json"
LIBRARY_REF = "library.ref.json"
VERSIONS = "versions.json"
SCALING = "scaling.json"
INHERIT = "inherit.json"


class Record(BaseModel):
    """Base of every run record: unknown fields are ignored so that writers can add fields without breaking
    older readers."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class _File(Record):
    # A whole file keeps the metadata its writer added, so that reading and writing it again loses nothing.
    model_config = ConfigDict(extra="allow")


class ToolStepRecord(Record):
    """One tool run of a tool-using actor: `kind` (python | experience), the code, the output the model saw
    next, and which round and model reply it came from."""

    kind: str
    input: str = ""
    observation: str = ""
    seconds: float = 0.0
    round: int = 0
    turn: int = 0


class ItemRecord(Record):
    """One evaluated item: the prompt the actor saw, its reply, the verdict, the experience retrieved and what
    the attempt cost. `repeat` numbers the samples of one problem from 0."""

    mode: str
    problem_id: str
    question: str = ""
    reference: str = ""
    # The kind of problem the data says this is (`Problem.category`; "" when it says none).
    category: str = ""
    prompt: str = ""
    reply: str = ""
    extracted: str | None = None
    correct: bool = False
    score: float | None = None
    retrieved: list[str] = []
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rounds: int = 1
    error: str | None = None
    repeat: int = 0
    score_data: dict[str, Any] = {}
    # Tool runs of a tool-using actor (`--tools`), every round's, in order; `calls` counts model calls only.
    tool_calls: int = 0
    steps: list[ToolStepRecord] = []
    # Wall seconds from the item's retrieval to its last reply, waits for a busy model included (0: not recorded,
    # as in runs written before it was).
    seconds: float = 0.0

    @field_validator("retrieved", "score_data", "repeat", "steps", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        # Some writers spell "none" as null; the field's default says the same thing.
        if value is None and info.field_name is not None:
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        return value

    def as_score(self) -> Score:
        """The task's verdict on this item, as the task's `aggregate` takes it."""
        return Score(self.correct, 0.0 if self.score is None else self.score, self.extracted, data=self.score_data)


class Metric(Record):
    """A task's own headline number (e.g. Spearman, top-1) with its bootstrap interval and the other values the
    task computed alongside it."""

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    values: dict[str, float] = {}


class ModeResult(Record):
    """One mode's outcome. `n` counts problems, `samples` their evaluated samples (n x repeats); accuracy is
    over samples. `metric` is the task's own headline number when it has one. `items` stay in memory only:
    `items.jsonl` holds them."""

    mode: str
    n: int = 0
    correct: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    # The items' own wall seconds, summed (each from its retrieval to its last reply; items of an interrupted run
    # that were kept count with theirs): per item, what one item costs a worker. 0 where items recorded none.
    item_seconds: float = 0.0
    errors: int = 0
    items: list[ItemRecord] = Field(default=[], exclude=True, repr=False)
    # 0 in runs written before repeats existed, where the samples are the problems.
    samples: int = 0
    repeats: int = 1
    metric: Metric | None = None
    tool_calls: int = 0

    @property
    def attempts(self) -> int:
        """The denominator for accuracy and per-item costs: every evaluated sample."""
        return self.samples or self.n

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> float:
        """Correct samples over all samples (0 when there are none)."""
        return self.correct / self.attempts if self.attempts else 0.0

    def summary(self) -> dict[str, Any]:
        """The entry `results.json` lists for this mode: everything but the items, accuracy included."""
        return self.model_dump()


class CallStats(Record):
    """What one role (actor, critic...) spent: the `Meter`'s counters, and what `results.json` records of them.

    `calls` are logical calls (a retried call counts once; its extra tries are in `retries`). `failures` are
    calls that raised, plus structured calls that ended without a valid reply (`Meter.record_failure`).
    `latency_s` is the summed wall time callers waited, retries and queueing included.
    """

    calls: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0

    def __add__(self, other: CallStats) -> CallStats:
        return CallStats(**{name: getattr(self, name) + getattr(other, name) for name in CallStats.model_fields})


class Results(_File):
    """`results.json`: run metadata and one summary per mode."""

    task: str | None = None
    test: str | None = None
    train: str | None = None
    library: str | None = None
    model: str | None = None
    started: float | None = None
    seconds: float | None = None
    config: dict[str, Any] = {}
    calls: dict[str, CallStats] = {}
    results: list[ModeResult]


class Fit(Record):
    """Least-squares fit of accuracy = intercept + slope * ln(1 + size)."""

    intercept: float
    slope: float
    r2: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def formula(self) -> str:
        """The fit as people read it, e.g. "acc = 0.270 + 0.049 ln(1+size)"."""
        sign = "+" if self.slope >= 0 else "-"
        return f"acc = {self.intercept:.3f} {sign} {abs(self.slope):.3f} ln(1+size)"


class ScalingPoint(Record):
    """Flex mode evaluated with the library replayed to `size` training problems (`experiences` entries).
    `accuracy` is the task's own metric when it has one. `result` stays in memory only."""

    size: int
    experiences: int | None = None
    accuracy: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    result: ModeResult | None = Field(default=None, exclude=True, repr=False)


class Scaling(_File):
    """`scaling.json`: the points of a scaling-law run and the log-linear fit through them."""

    task: str | None = None
    model: str | None = None
    library: str | None = None
    points: list[ScalingPoint] = []
    fit: Fit | None = None


class InheritRow(Record):
    """One setting of an inheritance run: a model without a library, with another model's, or with its own.
    `accuracy` is the task's own metric when it has one. `result` stays in memory only."""

    label: str
    library: str | None = None
    accuracy: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    result: ModeResult | None = Field(default=None, exclude=True, repr=False)


class Inherit(_File):
    """`inherit.json`: the settings of an inheritance run."""

    task: str | None = None
    model: str | None = None
    rows: list[InheritRow] = []


class ExperienceView(Record):
    """An experience as `Experience.to_dict()` writes it, the fields a reader shows."""

    id: str
    zone: str
    level: str
    title: str = ""
    content: str = ""
    examples: list[str] = []
    parent_id: str | None = None
    provenance: dict[str, Any] = {}
    retrieved: int = 0
    helped: int = 0
    hurt: int = 0


# The numbers an imported experience may hold: counters up to the largest integer a float holds exactly, times
# (Unix seconds) from 1970 to 2200; anything else is not what a library writes.
MAX_COUNT = 2**53
LATEST_TIMESTAMP = 7_258_118_400.0


def _in_range(low: float, high: float) -> AfterValidator:
    def check(value: float) -> float:
        if not math.isfinite(value) or not low <= value <= high:
            raise PydanticCustomError("out_of_range", f"out of range ({low:g} to {high:g})")
        return value

    return AfterValidator(check)


# A counter, and a time in Unix seconds, as an import accepts them (strictly: a number, never a bool or a string).
Count = Annotated[float, Strict(), _in_range(0, MAX_COUNT)]
Timestamp = Annotated[float, Strict(), _in_range(0, LATEST_TIMESTAMP)]


class ProvenanceClaims(Record):
    """The `provenance` of an exported experience as an import reads it: only what the entry claims about itself
    (the import gives it a provenance of its own). Strict, as `ImportedExperience`."""

    model_config = ConfigDict(strict=True)

    task: str | None = None
    model: str | None = None
    run_id: str | None = None
    source: str | None = None
    actor: str | None = None
    origin: str | None = None
    problem_ids: list[str] = []


class ImportedExperience(ExperienceView):
    """An entry of a flexlearn export (`experiences[i]`, `Experience.to_dict()`) as an import reads it: the fields
    of `ExperienceView`, checked strictly, since the file is untrusted. Nothing is coerced (a number where text
    belongs, a string where a list belongs is an error naming the field), `zone`, `level` and `content` are
    required, numbers must be finite and in range, and a counter or time that is present must be a number (null
    is not one). Text is cleaned and cut by the importer (`flexlearn.library.formats`), which notes each cut."""

    model_config = ConfigDict(strict=True)

    id: str = ""
    content: str
    provenance: ProvenanceClaims | None = None
    # None: absent from the entry.
    retrieved: Count | None = None  # type: ignore[assignment]
    helped: Count | None = None  # type: ignore[assignment]
    hurt: Count | None = None  # type: ignore[assignment]
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return str(Zone(value))

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        return str(Level(value))

    @field_validator("retrieved", "helped", "hurt", "created_at", "updated_at", mode="before")
    @classmethod
    def _null_is_not_a_number(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("float_type", "Input should be a valid number")
        return value


# What a type error says was expected (`problem`), by pydantic's error type.
_EXPECTED = {
    "string_type": "a string",
    "float_type": "a number",
    "list_type": "a list",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
}


def problem(error: ValidationError, where: str) -> str:
    """What pydantic found wrong in the data at `where` (`experiences[3]`), as one line naming its place in the
    file, e.g. `experiences[3].title: expected a string, got int`; further problems are counted, not listed."""
    errors = error.errors(include_url=False)
    # A missing field is named before a wrong one.
    first = next((e for e in errors if e["type"] == "missing"), errors[0])
    kind, value, loc = first["type"], first["input"], first["loc"]
    if kind == "missing":  # named by its parent, as "experiences[3]: missing 'content'"
        loc, message = loc[:-1], f"missing {loc[-1]!r}"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {type(value).__name__}"
    elif kind == "out_of_range":
        message = f"{value!r} is {first['msg']}"
    elif kind == "value_error":
        message = str(first.get("ctx", {}).get("error", first["msg"]))
    else:
        message = first["msg"]
    place = where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{place}: {message}{more}"


class LibraryStats(Record):
    """The parts of `Library.stats()` a reader shows."""

    total: int | None = None
    by_zone_level: dict[str, dict[str, int]] = {}
    events: dict[str, int] = {}


class LibrarySnapshot(Record):
    """`library.json`: a `flexlearn.library.formats.export_json` file, read for its stats and experiences (the
    event log is left out). Snapshots written before runs used that format carry `path` instead of `format`."""

    format: str | None = None
    path: str | None = None
    stats: LibraryStats = LibraryStats()
    experiences: list[ExperienceView] = []


class LibraryRef(LibrarySnapshot):
    """`library.ref.json`: the library a run used, by reference (its `path` and `content_hash` when the run was
    written, `revision`), with its `stats` then and, in `experiences`, only the entries the run retrieved, in
    full. Enough for the report; the library itself stays where it is (copied only with `--snapshot`)."""

    content_hash: str = ""
    revision: int | None = None
    # Retrieved ids this library did not hold when the run was written: deleted meanwhile, or from another library
    # the run also used (`flex inherit` refers to the inherited one).
    missing: list[str] = []


class VersionView(Record):
    """One version of a library (`flexlearn.library.history.Version`): an absorbed batch or a manual change."""

    version: int
    kind: str
    run_id: str = ""
    problem_id: str | None = None
    created_at: float = 0.0
    actions: dict[str, int] = {}


class GateView(Record):
    """One verdict of the regression gate (`flexlearn.loop.gate.Verdict`), as its `gate` run records it."""

    run_id: str
    what: str = ""
    before: int
    after: int
    n: int
    correct_without: int
    correct_with: int
    diff: float
    ci_low: float
    ci_high: float
    wins: int = 0
    losses: int = 0
    rolled_back: bool
    reason: str = ""
    rollback_run: str | None = None


class Versions(_File):
    """`versions.json`: the library's history when the run was written: its newest versions (`total` in all) and
    every verdict of the regression gate, oldest first."""

    format: str = "flexlearn-versions"
    total: int
    recent: list[VersionView]
    gates: list[GateView] = []
