"""The regression gate: keep a batch of lessons only if it does not make answers worse.

After a batch is applied (a learn run, an import, absorbed outcomes), the check set is answered in flex mode twice
on the same model and settings: with the library as it was before the batch and with the batch. Each side runs on
a private copy of the library at that version (`history.materialize`), so the check moves no usage counter of the
real one. The batch is rolled back (`history.rollback`, a logged event with the figures in its reason) when the
paired difference says it hurt:

- a drop whose 95% paired-bootstrap interval lies wholly below zero, or
- on a check set of fewer than `SMALL_CHECK_SET` problems, where such an interval is rarely that narrow, a net
  loss of more than one problem (`losses - wins > 1`).

Every verdict, kept or rolled back, is recorded as a run of kind ``gate`` whose config holds the figures.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flexlearn.library import history
from flexlearn.library.store import Library
from flexlearn.loop.agents import Agents
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate
from flexlearn.loop.stats import paired
from flexlearn.records import ItemRecord
from flexlearn.tasks import Problem, Task

SMALL_CHECK_SET = 100
STOPPED = "stopped"  # a gate run that ended before its verdict (its batch was rolled back)
GATE_STOPPED = "gate-stopped"  # a learn run whose gate stopped: resumable with --resume --gate


@dataclass
class Verdict:
    """The gate's figures for one batch, and what it did."""

    before: int  # the version without the batch
    after: int  # the version with it
    n: int
    correct_without: int
    correct_with: int
    diff: float  # mean paired difference, with minus without
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    rolled_back: bool
    reason: str
    rollback_run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a person: the accuracies, the difference and the decision."""
        return (
            f"gate on {self.n} check problems: {self.correct_without}/{self.n} without the batch, "
            f"{self.correct_with}/{self.n} with it ({self.diff:+.3f}, 95% interval {self.ci_low:+.3f} to "
            f"{self.ci_high:+.3f}, {self.wins} gained, {self.losses} lost): {self.reason}"
        )


def harmful(figures: dict[str, float]) -> str | None:
    """Why a batch with these paired figures (`stats.paired`) must be rolled back, or None to keep it."""
    if figures["diff"] < 0 and figures["ci_high"] < 0:
        return "rolled back: the drop's 95% interval excludes zero"
    net_loss = figures["losses"] - figures["wins"]
    if figures["n"] < SMALL_CHECK_SET and net_loss > 1:
        return f"rolled back: {int(net_loss)} problems lost net on a check set under {SMALL_CHECK_SET}"
    return None


async def _answer(
    check: list[Problem],
    library: Library,
    *,
    task: Task,
    agents: Agents,
    config: EvalConfig,
    on_item: Callable[[ItemRecord], None] | None,
) -> dict[str, bool]:
    [result] = await evaluate(
        check, task=task, modes=[Mode.FLEX], agents=agents, config=config, library=library, on_item=on_item
    )
    items: list[ItemRecord] = result.items
    return {item.problem_id: bool(item.correct) for item in items}


async def gate(
    library: Library,
    before: int,
    check: list[Problem],
    *,
    task: Task,
    agents: Agents,
    config: EvalConfig,
    what: str = "batch",
    runs: set[str] | None = None,
    on_item: Callable[[ItemRecord], None] | None = None,
) -> Verdict:
    """Check the changes made since version `before` (up to the library's revision when the gate starts) against
    `check` and roll them back if they hurt; the verdict is recorded in `library` as a run of kind ``gate``. The
    rollback undoes the batch alone (`history.revert`): what other writers change while the check runs stays, and
    with `runs` (the batch's run ids) so do their changes inside the range. `what` names the batch in the log;
    `on_item` sees each check item as it is answered (without the batch first, then with it).

    A gate that cannot reach its verdict (interrupted, cancelled, the model unreachable) rolls the changes back
    before the error goes on: a gated library never keeps a batch unchecked. The rollback names the version that
    held the batch, so `flex library rollback LIBRARY AFTER` brings it back."""
    after = library.revision()
    try:
        with tempfile.TemporaryDirectory(prefix="flex-gate-") as tmp:
            answers: list[dict[str, bool]] = []
            for name, version in (("without", before), ("with", after)):
                with history.materialize(library, version, Path(tmp) / f"{name}.flexlib") as copy:
                    answers.append(await _answer(check, copy, task=task, agents=agents, config=config, on_item=on_item))
    except BaseException as exc:
        why = f"gate on {what} stopped before its verdict ({type(exc).__name__}); version {after} held it"
        start = library.revision()
        reverted = history.revert(library, before, after, runs=runs, reason=why)
        _record_stop(library, what=what, before=before, after=after, runs=runs, reverted=reverted, span=start)
        raise
    without, with_batch = answers
    ids = [p.id for p in check if p.id in without and p.id in with_batch]
    figures = paired([with_batch[i] for i in ids], [without[i] for i in ids])
    reason = harmful(figures)
    verdict = Verdict(
        before=before,
        after=after,
        n=len(ids),
        correct_without=sum(without[i] for i in ids),
        correct_with=sum(with_batch[i] for i in ids),
        diff=figures["diff"],
        ci_low=figures["ci_low"],
        ci_high=figures["ci_high"],
        wins=int(figures["wins"]),
        losses=int(figures["losses"]),
        rolled_back=reason is not None,
        reason=reason or "kept: no drop the gate counts as harm",
    )
    if reason is not None:
        reverted = history.revert(library, before, after, runs=runs, reason=f"gate on {what}: {verdict.line()}")
        verdict.rollback_run = reverted.run_id
    run_id = _gate_run_id()
    library.begin_run(run_id, kind="gate", config={"what": what, "runs": sorted(runs or ()), **verdict.to_dict()})
    library.finish_run(run_id, status="done")
    return verdict


def _gate_run_id() -> str:
    return f"gate-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _record_stop(
    library: Library,
    *,
    what: str,
    before: int,
    after: int,
    runs: set[str] | None,
    reverted: history.Reverted,
    span: int,
) -> None:
    """Log a gate stopped before its verdict (a run of kind ``gate``, status ``stopped``, with what its rollback
    did), and mark the learn runs of its batch ``gate-stopped``: unfinished, so that `flex learn ... --resume --gate`
    finds the run again, brings its batch back (`reopen`) and judges it."""
    config = {
        "what": what,
        "before": before,
        "after": after,
        "runs": sorted(runs or ()),
        "rollback_run": reverted.run_id,
        "rollback_span": [span, library.revision()],
    }
    run_id = _gate_run_id()
    library.begin_run(run_id, kind="gate", config=config)
    library.finish_run(run_id, status=STOPPED)
    learned = {info.run_id for info in library.runs("learn") if info.status == "done"}
    for rid in sorted(set(runs or ()) & learned):
        library.finish_run(rid, status=GATE_STOPPED)


def reopen(library: Library, run_id: str) -> tuple[int, str] | None:
    """Bring back the batch of learn run `run_id` that a stopped gate rolled back, so the gate can judge it again:
    returns the version before it came back and the run that brought it (the batch to judge), or None when no
    stopped gate holds that run. Undoes the stopped gate's rollback alone (`history.revert`), as a logged run."""
    for info in reversed(library.runs("gate")):
        config = library.run_config(info.run_id) or {}
        if run_id not in config.get("runs", ()):
            continue
        if info.status != STOPPED:
            return None  # the newest gate of that run reached its verdict
        first, last = config["rollback_span"]
        start = library.revision()
        why = f"gate resumed on {config['what']}: the batch its stop rolled back is brought back to be judged"
        brought = history.revert(library, first, last, runs={config["rollback_run"]}, reason=why)
        library.finish_run(info.run_id, status="resumed")
        return start, brought.run_id
    return None
