"""Everything the CLI shows a person: tables, progress bars, messages. Progress goes to stderr so that `--json`
output on stdout stays machine-readable."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from flexlearn.experience import Experience, Level, Zone
from flexlearn.models.middleware import Meter
from flexlearn.records import ItemRecord, ModeResult

out = Console()
err = Console(stderr=True)


@contextmanager
def progress_bars(*stages: tuple[str, int]) -> Iterator[tuple[Progress, list[TaskID]]]:
    """One live display with a bar per stage (rich shows only one live display at a time)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    with bar:
        yield bar, [bar.add_task(description, total=total, status="") for description, total in stages]


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Progress]:
    with progress_bars((description, total)) as (bar, _):
        yield bar


def tokens_text(meter: Meter) -> str:
    total = meter.total()
    return f"{total.prompt_tokens + total.completion_tokens:,} tok"


def results_table(results: Sequence[ModeResult], title: str) -> Table:
    table = Table(title=title)
    metric = next((r.metric.name for r in results if r.metric), None)
    columns = ["mode", "accuracy", "95% CI"]
    if metric:
        columns += [metric, f"{metric} 95% CI"]
    columns += ["n", "calls/item", "tokens/item", "errors"]
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
            str(r.errors),
        ]
        table.add_row(*row)
    return table


# Roles the meter knows that are played by another role's model.
_PLAYED_BY = {"judge": "critic"}


def meter_table(meter: Meter, models: dict[str, str] | None = None) -> Table:
    """Calls, failures, tokens and time per role (the blind judge apart from the critic), with each role's
    model when `models` (role -> model name) is given."""
    table = Table(title="Model calls by role")
    columns = ["role", *(["model"] if models else []), "calls", "failures", "prompt tok", "completion tok"]
    for name in (*columns, "seconds", "completion tok/s"):
        table.add_column(name, justify="left" if name in ("role", "model") else "right")
    for role, s in sorted(meter.snapshot().items()):
        model = [models.get(role) or models.get(_PLAYED_BY.get(role, ""), "-")] if models else []
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
        f"parent: {e.parent_id or '-'}   retrieved: {e.retrieved}   helped: {e.helped}   hurt: {e.hurt}",
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
        self.right[item.mode] = self.right.get(item.mode, 0) + item.correct
        self.seen[item.mode] = self.seen.get(item.mode, 0) + 1
        acc = "  ".join(f"{m} {self.right[m] / self.seen[m]:.0%}" for m in self.seen)
        self.bar.update(self.task_id, advance=1, status=f"{acc}  {tokens_text(self.meter)}")
