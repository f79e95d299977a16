"""Everything the CLI shows a person: tables, progress bars, messages. Progress goes to stderr so that `--json`
output on stdout stays machine-readable."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text

from flexlearn.experience import Experience, Level, Zone
from flexlearn.models.middleware import Meter
from flexlearn.records import ItemRecord, ModeResult

out = Console()
err = Console(stderr=True)


class TimeLeftColumn(ProgressColumn):
    """The time left at the average pace so far. Items take seconds to minutes each, too slow for rich's own
    estimate, which looks at the last 30 seconds only."""

    def render(self, task: Task) -> Text:
        if task.finished:
            return Text("done", style="progress.remaining")
        if not task.completed or not task.elapsed or task.total is None:
            return Text("left ?", style="progress.remaining")
        left = task.elapsed / task.completed * (task.total - task.completed)
        return Text(f"left ~{duration_text(left)}", style="progress.remaining")


def duration_text(seconds: float) -> str:
    """12s, 4m05s, 1h02m."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@contextmanager
def progress_bars(*stages: tuple[str, int]) -> Iterator[tuple[Progress, list[TaskID]]]:
    """One live display with a bar per stage (rich shows only one live display at a time). The first stage's
    clock starts now, a later one's when `start_stage` (or its first item) starts it. The status text comes
    last and is the part cut short on a narrow terminal, so the counter and the times stay whole."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=12),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeLeftColumn(),
        TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        console=err,
        transient=False,
        expand=True,
        # Without a terminal (CI, nohup, a log file) a live bar prints nothing until the end: plain lines instead.
        disable=not err.is_terminal,
    )
    with bar, plain_progress(bar, enabled=not err.is_terminal):
        yield (
            bar,
            [
                bar.add_task(description, total=total, status="", start=i == 0)
                for i, (description, total) in enumerate(stages)
            ],
        )


def progress_interval() -> float:
    """Seconds between plain progress lines: FLEX_PROGRESS_INTERVAL, default 30."""
    try:
        return max(0.05, float(os.environ.get("FLEX_PROGRESS_INTERVAL", "") or 30.0))
    except ValueError:
        return 30.0


def progress_line(task: Task) -> str:
    """One stage as a line for a log: `eval 12/40 (30%)  elapsed 1m10s  left ~3m03s  vanilla 50%  1,234 tok`."""
    total = int(task.total or 0)
    done = int(task.completed)
    pct = f" ({done / total:.0%})" if total else ""
    elapsed = task.elapsed or 0.0
    left = "left ?" if not done or total <= done else f"left ~{duration_text(elapsed / done * (total - done))}"
    status = task.fields.get("status", "")
    return f"{task.description} {done}/{total}{pct}  elapsed {duration_text(elapsed)}  {left}  {status}".rstrip()


@contextmanager
def plain_progress(bar: Progress, *, enabled: bool, interval: float | None = None) -> Iterator[None]:
    """While the block runs, print each started stage of `bar` as a plain line every `interval` seconds (and
    once more at the end), for logs where a live bar shows nothing."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    every = progress_interval() if interval is None else interval

    def report() -> None:
        for task in bar.tasks:
            if task.started:
                err.print(progress_line(task), markup=False, highlight=False, soft_wrap=True)

    def tick() -> None:
        while not stop.wait(every):
            report()

    ticker = threading.Thread(target=tick, name="flex-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        report()


def start_stage(bar: Progress, task_id: TaskID) -> None:
    """Start a stage's clock (once)."""
    if next(t for t in bar.tasks if t.id == task_id).start_time is None:
        bar.start_task(task_id)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Progress]:
    with progress_bars((description, total)) as (bar, _):
        yield bar


class LiveStatus:
    """A bar's status text: what the loop last reported (`set`), then the calls and tokens so far, refreshed after
    every model call, so a slow model is seen working within a problem rather than only between problems."""

    def __init__(self, bar: Progress, task_id: TaskID, meter: Meter) -> None:
        self.bar, self.task_id, self.meter, self.text = bar, task_id, meter, ""
        meter.add_listener(self.refresh)

    def set(self, text: str, **fields: Any) -> None:
        self.text = text
        self.refresh(**fields)

    def refresh(self, **fields: Any) -> None:
        if not fields and any(t.id == self.task_id and t.finished for t in self.bar.tasks):
            return  # the stage is over: later calls belong to the next one
        total = self.meter.total()
        live = f"{total.calls} calls  {tokens_text(self.meter)}"
        self.bar.update(self.task_id, status=f"{self.text}  {live}" if self.text else live, **fields)


def tokens_text(meter: Meter) -> str:
    total = meter.total()
    return f"{total.prompt_tokens + total.completion_tokens:,} tok"


def results_table(results: Sequence[ModeResult], title: str) -> Table:
    table = Table(title=title)
    metric = next((r.metric.name for r in results if r.metric), None)
    columns = ["mode", "accuracy", "95% CI"]
    if metric:
        columns += [metric, f"{metric} 95% CI"]
    columns += ["n", "calls/item", "tok/item", "s/item", "errors"]
    tools = any(r.tool_calls for r in results)
    if tools:
        columns.insert(-1, "tool calls/item")
    for name in columns:
        table.add_column(name, justify="left" if name == "mode" else "right")
    for r in results:
        samples = r.samples or r.n
        tokens = r.prompt_tokens + r.completion_tokens
        row = [r.mode, f"{r.accuracy:.1%}", f"{r.ci_low:.1%} - {r.ci_high:.1%}"]
        if metric:
            m = r.metric
            row += (
                ["nan", "0.000 - 0.000"]
                if m is None
                else [f"{m.value:.3f}", f"{m.ci_low or 0:.3f} - {m.ci_high or 0:.3f}"]
            )
        n = f"{r.n}" if r.repeats == 1 else f"{r.n} x {r.repeats}"
        row += [
            n,
            f"{r.calls / samples:.1f}" if samples else "-",
            f"{tokens / samples:,.0f}" if samples else "-",
            f"{r.item_seconds / samples:.1f}" if samples and r.item_seconds else "-",
            *([f"{r.tool_calls / samples:.1f}" if samples else "-"] if tools else []),
            str(r.errors),
        ]
        table.add_row(*row)
    return table


def paired_table(results: Sequence[ModeResult], comparison: dict[str, dict[str, Any]], mode: str = "flex") -> Table:
    """`mode` against each other mode on the same problems (`loop.compare.against_others`), the most accurate of
    the others marked: the comparison the paper's table is read for."""
    accuracy = {r.mode: r.accuracy for r in results}
    best = max(comparison, key=lambda other: accuracy.get(other, 0.0), default=None)
    table = Table(title=f"{mode} minus each other mode, paired over the same problems (bootstrap 95% CI)")
    for name in ("against", "difference", "95% CI", "wins", "losses", "n"):
        table.add_column(name, justify="left" if name == "against" else "right")
    for other, row in comparison.items():
        table.add_row(
            f"{other} (best)" if other == best and len(comparison) > 1 else other,
            f"{row['diff'] * 100:+.1f} pts",
            f"{row['ci_low'] * 100:+.1f} to {row['ci_high'] * 100:+.1f}",
            str(row["wins"]),
            str(row["losses"]),
            str(row["n"]),
        )
    return table


def category_table(kinds: dict[str, dict[str, list[int]]], modes: Sequence[str]) -> Table:
    """Each mode's right answers over its samples per kind of problem (`loop.compare.by_category`)."""
    table = Table(title="accuracy per kind of problem (right / evaluated)")
    table.add_column("category")
    for mode in modes:
        table.add_column(mode, justify="right")
    for kind, row in kinds.items():
        table.add_row(escape(kind), *(f"{row[m][0]}/{row[m][1]}" if m in row else "-" for m in modes))
    return table


# Roles the meter knows that are played by another role's model.
_PLAYED_BY = {"judge": "critic"}


def meter_table(meter: Meter, models: dict[str, str] | None = None) -> Table:
    """Calls, failures, tokens and time per role (the blind judge apart from the critic), with each role's
    model when `models` (role -> model name) is given: in the title when every role has the same one, so that the
    table fits 80 columns ("out" tokens are completion tokens)."""
    names = set(models.values()) if models else set()
    per_role = len(names) > 1
    title = "Model calls by role" + (f" ({names.pop()})" if len(names) == 1 else "")
    table = Table(title=title)
    columns = ["role", *(["model"] if per_role else []), "calls", "failed", "prompt tok", "out tok"]
    for name in (*columns, "seconds", "out tok/s"):
        table.add_column(name, justify="left" if name in ("role", "model") else "right")
    seen = meter.snapshot()
    idle = {"calls": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0}
    # A role of the run that never called its model still gets its row: the updater decides cases, exact copies
    # and entries of a kind the library has not seen without one, which a missing row would leave unexplained.
    rows = {**{role: idle for role in (models or {})}, **seen}
    for role, s in sorted(rows.items()):
        model = [models.get(role) or models.get(_PLAYED_BY.get(role, ""), "-")] if models and per_role else []
        table.add_row(
            role,
            *model,
            str(s["calls"]),
            str(s["failures"]),
            f"{s['prompt_tokens']:,}",
            f"{s['completion_tokens']:,}",
            f"{s['latency_s']:.1f}",
            f"{tokens_per_second(s['completion_tokens'], s['latency_s']):.1f}",
        )
    if "updater" in rows and not rows["updater"]["calls"]:
        table.caption = (
            "updater 0 calls: every candidate was decided without the model (a case is added unless it is a "
            "copy, and so is the first lesson of its zone, level or kind)"
        )
    return table


def tokens_per_second(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def stats_table(stats: dict[str, Any]) -> Table:
    table = Table(title=f"Experience library: {stats['total']} entries")
    table.add_column("zone")
    for level in Level:
        table.add_column(str(level), justify="right")
    table.add_column("total", justify="right")
    for zone in Zone:
        row = stats["by_zone_level"][str(zone)]
        table.add_row(str(zone), *(str(row[str(level)]) for level in Level), str(stats["by_zone"][str(zone)]))
    return table


def experience_line(e: Experience, width: int = 160) -> str:
    text = escape(" ".join(e.content.split()))
    if len(text) > width:
        text = text[: width - 3] + "..."
    return (
        f"[dim]{e.id}[/dim] [{'green' if e.zone == Zone.GOLDEN else 'red'}]{e.zone}[/] {e.level:<9} "
        f"[bold]{escape(e.title)}[/bold]: {text}"
    )


def experience_detail(e: Experience, events: list[str]) -> str:
    lines = [
        f"[bold]{e.id}[/bold]  {e.zone} / {e.level}  [bold]{escape(e.title)}[/bold]",
        f"parent: {e.parent_id or '-'}   retrieved: {e.retrieved}   helped: {e.helped}   hurt: {e.hurt}"
        f"   status: {e.status}",
        escape(
            f"provenance: task={e.provenance.task or '-'} model={e.provenance.model or '-'} "
            f"actor={e.provenance.actor or '-'} "
            f"run={e.provenance.run_id or '-'} problems={', '.join(e.provenance.problem_ids) or '-'} "
            f"source={e.provenance.source}"
        ),
        "",
        escape(e.content),
    ]
    for x in e.examples:
        lines += ["", "[dim]example:[/dim]", escape(x)]
    if events:
        lines += ["", "[dim]history:[/dim]", *(escape(line) for line in events)]
    return "\n".join(lines)


class ItemProgress:
    """Advances an evaluation bar per item, showing accuracy so far per mode and tokens spent."""

    def __init__(self, bar: Progress, task_id: TaskID, meter: Meter) -> None:
        self.bar, self.task_id, self.meter = bar, task_id, meter
        self.right: dict[str, int] = {}
        self.seen: dict[str, int] = {}

    def __call__(self, item: ItemRecord) -> None:
        start_stage(self.bar, self.task_id)
        self.right[item.mode] = self.right.get(item.mode, 0) + item.correct
        self.seen[item.mode] = self.seen.get(item.mode, 0) + 1
        acc = "  ".join(f"{m} {self.right[m] / self.seen[m]:.0%}" for m in self.seen)
        self.bar.update(self.task_id, advance=1, status=f"{acc}  {tokens_text(self.meter)}")
