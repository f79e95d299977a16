"""`flex library queue`: what waits in a library's outcome queue (`flexlearn.record(..., wait=False)`, the MCP
server's record tool), and draining it in the foreground with `--absorb`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from flexlearn import Library
from flexlearn.cli.common import (
    Command,
    ConcurrencyOpt,
    ModelOpt,
    TaskOpt,
    TimeoutOpt,
    build_agents,
    examples,
    handle_errors,
    library_argument,
    resolve_task,
    run_closing,
)
from flexlearn.cli.gating import GateOpt, gate_engine, load_check, print_verdict, run_gate
from flexlearn.cli.output import LiveStatus, out, progress_bar
from flexlearn.engine import BATCH_SIZE, AbsorbSummary, Engine, Verdict
from flexlearn.errors import ConfigError
from flexlearn.library.outcomes import MAX_ATTEMPTS
from flexlearn.models.middleware import Meter
from flexlearn.settings import EVAL
from flexlearn.tasks import Problem, Task


def register(library_app: typer.Typer) -> None:
    library_app.command(
        "queue",
        cls=Command,
        epilog=examples(
            "flex library queue gsm8k.flexlib",
            "flex library queue gsm8k.flexlib --absorb --model openai:gpt-4o-mini",
            "flex library queue shared.flexlib --absorb --review -m openai:gpt-4o-mini",
            "flex library queue gsm8k.flexlib --retry-failed --absorb --json",
            "flex library queue gsm8k.flexlib --absorb -m openai:gpt-4o-mini \\",
            "    --gate check.jsonl --task gsm8k",
        ),
    )(handle_errors(queue_cmd, resume_hint="run the same command again (what is absorbed stays absorbed)"))


def queue_cmd(
    library: Annotated[str, library_argument()],
    absorb: Annotated[
        bool,
        typer.Option(
            "--absorb", help="Distil and absorb what is queued now, in the foreground. Default: off, only show it."
        ),
    ] = False,
    model: ModelOpt = "local",
    review: Annotated[
        bool,
        typer.Option(
            "--review",
            help="With --absorb: the lessons wait in quarantine until approved with flex library review. Default: off.",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help=f"Queue again the outcomes that failed {MAX_ATTEMPTS} times (their attempts reset). Default: off.",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="With --absorb: outcomes absorbed at once.")
    ] = BATCH_SIZE,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help="With --absorb: at most this many outcomes. Default: all.", show_default=False
        ),
    ] = None,
    gate_check: GateOpt = None,
    task: TaskOpt = None,
    concurrency: ConcurrencyOpt = EVAL.concurrency,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Show the outcomes recorded without waiting (flexlearn.record(..., wait=False), flex mcp's record tool):
    how many wait, were absorbed or failed, and the last errors; --absorb learns from those waiting now.

    Each outcome is marked absorbed in the same transaction as the lessons it added, so an interrupted --absorb
    loses nothing and applies nothing twice: run it again. One that fails at the model stays queued and is tried
    again, up to 3 times, then kept as failed with its error (--retry-failed queues it again)."""
    if not absorb and (review or limit is not None or gate_check is not None):
        raise ConfigError("--review, --limit and --gate are for --absorb: add --absorb, or drop them")
    if review and gate_check is not None:
        raise ConfigError("--gate judges lessons a model is shown, and --review holds them in quarantine: drop one")
    the_task = resolve_task(task, library) if gate_check is not None else None
    check = load_check(the_task, gate_check) if the_task is not None else []
    with Library.open_for_reading(library) as lib:
        requeued = 0
        if retry_failed or absorb:
            lib.check_writable()
        if retry_failed:
            requeued = lib.requeue_failed()
        summary, verdict = (None, None)
        if absorb:
            summary, verdict = _absorb(lib, model, review, batch_size, limit, concurrency, timeout, check, the_task)
        stats = lib.queue_stats()
    if as_json:
        data: dict[str, Any] = {**stats, "requeued": requeued}
        if summary is not None:
            data["absorb"] = {k: v for k, v in vars(summary).items() if k != "retrying_ids"}
            data["gate"] = verdict.to_dict() if verdict else None
        out.print_json(data=data)
        return
    if retry_failed:
        out.print(f"queued again {requeued} failed outcomes", highlight=False)
    if summary is not None:
        out.print(_summary_line(summary), highlight=False, markup=False)
    if verdict is not None:
        print_verdict(verdict)
    out.print(_stats_line(stats), highlight=False, markup=False)
    for e in stats["errors"]:
        out.print(f"  {e['id']} ({e['status']}, {e['attempts']} attempts): {e['error']}", highlight=False, markup=False)
    if stats["queued"] and not absorb:
        out.print(f"absorb them: flex library queue {library} --absorb --model URI", highlight=False, markup=False)


def _absorb(
    lib: Library,
    model: str,
    review: bool,
    batch_size: int,
    limit: int | None,
    concurrency: int,
    timeout: float,
    check: list[Problem],
    task: Task | None,
) -> tuple[AbsorbSummary, Verdict | None]:
    meter = Meter()
    agents = build_agents(model, prompt_kind=None, concurrency=concurrency, timeout=timeout, meter=meter)
    waiting = lib.queue_stats(errors=0)["queued"]
    before = lib.revision()
    with progress_bar("absorb", min(waiting, limit) if limit else waiting) as bar:
        status = LiveStatus(bar, bar.task_ids[0], meter)

        def on_progress(s: AbsorbSummary) -> None:
            status.set(f"absorbed {s.absorbed}  retrying {s.retried}  failed {s.failed}", completed=s.tried)

        engine = gate_engine(Engine.of(task, agents, lib), concurrency)

        async def absorb_then_gate() -> tuple[AbsorbSummary, Verdict | None]:
            summary = await engine.absorb(batch_size=batch_size, review=review, limit=limit, on_progress=on_progress)
            if not check or task is None or lib.revision() == before:
                return summary, None
            what = f"{summary.absorbed} absorbed outcomes"
            return summary, await run_gate(engine, before, check, what=what)

        return run_closing(agents, absorb_then_gate())


def _summary_line(s: AbsorbSummary) -> str:
    actions = ", ".join(f"{n} {verb}" for verb, n in (("added", s.actions["add"]), ("merged", s.actions["merge"])))
    line = f"absorbed {s.absorbed} outcomes in {s.seconds:.1f}s ({actions}, {s.actions['discard']} discarded)"
    if s.retried or s.failed:
        line += f"; {s.retried} failed and stay queued, {s.failed} failed for good: {s.last_error}"
    if s.taken:
        line += f"; {s.taken} were absorbed by another process meanwhile"
    return line


def _stats_line(stats: dict[str, Any]) -> str:
    line = f"{stats['queued']} queued, {stats['absorbed']} absorbed, {stats['failed']} failed"
    if stats["oldest_queued_at"] is not None:
        oldest = datetime.fromtimestamp(stats["oldest_queued_at"], UTC).strftime("%Y-%m-%d %H:%M")
        line += f"; oldest queued {oldest} UTC"
    if stats["retrying"]:
        line += f"; {stats['retrying']} queued after failing"
    return line + (": last errors" if stats["errors"] else "")
