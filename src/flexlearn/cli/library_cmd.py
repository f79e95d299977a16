"""`flex library ...`: inspect, search, export, import and copy an experience library (a file, or a PostgreSQL
database named by its `postgresql://` URL)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flexlearn import Library
from flexlearn.atomic import write_atomic
from flexlearn.cli.common import (
    HELP_MARKUP,
    Command,
    ConcurrencyOpt,
    KindOpt,
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
from flexlearn.cli.output import experience_detail, experience_line, out, stats_table
from flexlearn.engine import GATE_STOPPED, Engine
from flexlearn.errors import ConfigError
from flexlearn.experience import Level, Zone
from flexlearn.library.backend import is_url
from flexlearn.library.copy import copy_library
from flexlearn.library.formats import export_json, import_file, read_import, to_markdown
from flexlearn.models.middleware import Meter
from flexlearn.settings import EVAL

app = typer.Typer(
    help="Inspect, search, export, import and copy an experience library.",
    epilog=examples("flex library stats gsm8k.flexlib", "flex library show gsm8k.flexlib --zone warning"),
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)

LibArg = Annotated[str, library_argument()]


# The export format follows the file's extension.
EXPORT_FORMATS = {".json": "json", ".md": "markdown", ".markdown": "markdown"}


def _zone(value: str | None) -> Zone | None:
    try:
        return Zone(value) if value else None
    except ValueError:
        raise ConfigError(f"unknown zone {value!r}; choose golden or warning") from None


def _level(value: str | None) -> Level | None:
    try:
        return Level(value) if value else None
    except ValueError:
        raise ConfigError(f"unknown level {value!r}; choose principle, pattern or case") from None


@app.command("stats", cls=Command, epilog=examples("flex library stats gsm8k.flexlib --json"))
@handle_errors
def stats_cmd(
    library: LibArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Counts by zone and level, and the updater's decisions."""
    with Library.open_for_reading(library) as lib:
        stats = lib.stats()
    if as_json:
        out.print_json(data=stats)
        return
    out.print(stats_table(stats))
    out.print("updater log: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["events"].items())))


@app.command(
    "show",
    cls=Command,
    epilog=examples(
        "flex library show gsm8k.flexlib --zone golden --level principle",
        "flex library show gsm8k.flexlib e-1a2b3c4d   # one entry and its history",
    ),
)
@handle_errors
def show_cmd(
    library: LibArg,
    entry: Annotated[
        str | None, typer.Argument(metavar="ID", help="An experience id: show it in full with its history.")
    ] = None,
    zone: Annotated[str | None, typer.Option(help="golden or warning. Default: both.")] = None,
    level: Annotated[str | None, typer.Option(help="principle, pattern or case. Default: all three.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List entries, or show one with its event history."""
    with Library.open_for_reading(library) as lib:
        if entry:
            e = lib.get(entry)
            history = [
                f"{ev.action} by run {ev.run_id or '-'} (problem {ev.problem_id or '-'}): {ev.reason}"
                for ev in lib.events()
                if ev.experience_id == e.id
            ]
            if as_json:
                out.print_json(data={**e.to_dict(), "history": history})
            else:
                out.print(experience_detail(e, history))
            return
        entries = lib.list(zone=_zone(zone), level=_level(level))[:limit]
    if as_json:
        out.print_json(data=[e.to_dict() for e in entries])
        return
    for e in entries:
        out.print(experience_line(e), highlight=False)


@app.command(
    "search",
    cls=Command,
    epilog=examples('flex library search gsm8k.flexlib "percent of a total" --limit 5'),
)
@handle_errors
def search_cmd(
    library: LibArg,
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="Text to search for (BM25 over titles, contents and examples).")
    ],
    k: Annotated[int, typer.Option("--limit", "-k", min=1, help="At most this many results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Lexical search of the library."""
    with Library.open_for_reading(library) as lib:
        hits = lib.search(query, k=k)
    if as_json:
        out.print_json(data=[{"score": s, **e.to_dict()} for e, s in hits])
        return
    if not hits:
        out.print("no match")
    for e, score in hits:
        out.print(f"{score:6.2f}  " + experience_line(e), highlight=False)


@app.command(
    "export",
    cls=Command,
    epilog=examples(
        "flex library export gsm8k.flexlib gsm8k.json   # portable JSON",
        "flex library export gsm8k.flexlib gsm8k.md     # Markdown, for reading",
    ),
)
@handle_errors
def export_cmd(
    library: LibArg,
    dest: Annotated[Path, typer.Argument(metavar="FILE", help="Output file: .json (portable JSON) or .md (Markdown).")],
) -> None:
    """Export to the portable JSON format (see the README), or Markdown for reading; the file's extension
    chooses."""
    kind = EXPORT_FORMATS.get(dest.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"cannot tell the export format from {dest.name!r}: name the file .json (portable JSON) or .md (Markdown)"
        )
    with Library.open_for_reading(library) as lib:
        if kind == "markdown":
            write_atomic(dest, to_markdown(lib))
            out.print(f"wrote {dest} (Markdown)")
        else:
            n = export_json(lib, dest)
            out.print(f"wrote {n} experiences to {dest} (JSON)")


@app.command(
    "import",
    cls=Command,
    epilog=examples(
        "flex library import gsm8k.flexlib shared.json",
        "flex library import gsm8k.flexlib flex-authors/exps/ --source-model gpt-4o",
        "flex library import gsm8k.flexlib shared.json --trust --gate check.jsonl \\",
        "    --model openai:gpt-4o-mini",
    ),
)
@handle_errors
def import_cmd(
    library: LibArg,
    source: Annotated[
        Path,
        typer.Argument(metavar="SOURCE", help="A flexlearn JSON export, or a FLEX reference library (exps/*.json)."),
    ],
    source_model: Annotated[
        str,
        typer.Option(
            "--source-model",
            help="A label naming the model the entries came from, kept in their provenance (free text, not a "
            "model URI). Default: none.",
        ),
    ] = "",
    trust: Annotated[
        bool,
        typer.Option("--trust", help="Make the entries retrievable at once instead of quarantining them for review."),
    ] = False,
    gate_check: GateOpt = None,
    task: TaskOpt = None,
    model: ModelOpt = "local",
    prompt_kind: KindOpt = None,
    concurrency: ConcurrencyOpt = EVAL.concurrency,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Import experiences; the library is created if missing. Re-importing the same file adds nothing.

    Imported entries are untrusted: they wait in quarantine, never shown to a model, until approved with
    `flex library review LIBRARY --approve ID|all` (or imported with --trust). With --trust and --gate, the
    import is kept only if the check set is answered no worse with it (--model answers, --task scores)."""
    data = read_import(source)  # a bad file is refused before the library is touched
    if gate_check is not None and not trust:
        raise ConfigError("--gate judges entries a model is shown, and quarantined ones are not: add --trust")
    the_task = resolve_task(task, library) if gate_check is not None else None
    check = load_check(the_task, gate_check) if the_task is not None else []
    meter = Meter()
    agents = None
    if check:
        agents = build_agents(model, prompt_kind=prompt_kind, concurrency=concurrency, timeout=timeout, meter=meter)
    run_id = f"import-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    verdict = None
    with _removed_on_failure(library), Library.open(library) as lib:
        before = lib.revision()
        result = import_file(lib, source, source_model=source_model, trust=trust, run_id=run_id, data=data)
        if agents is not None and the_task is not None and lib.revision() != before:
            what = f"import {run_id} of {source.name}"
            verdict = run_closing(
                agents,
                run_gate(
                    gate_engine(Engine.of(the_task, agents, lib), concurrency), before, check, what=what, runs={run_id}
                ),
            )
        stats = lib.stats()
    if as_json:
        out.print_json(
            data={
                "added": result.added,
                "skipped": result.skipped,
                "quarantined": result.quarantined,
                "format": result.format,
                "warnings": result.warnings,
                "library": stats,
                "gate": verdict.to_dict() if verdict else None,
            }
        )
        return
    out.print(
        f"imported {result.added} experiences ({result.skipped} already present) from {source} [{result.format}]",
        highlight=False,
        markup=False,
    )
    for w in result.warnings[:20]:
        out.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    out.print(stats_table(stats))
    if verdict is not None:
        print_verdict(verdict)
    if result.quarantined:
        out.print(
            f"{result.quarantined} entries are in quarantine and not retrieved until approved: "
            f"flex library review {library}",
            highlight=False,
            markup=False,
        )


@contextmanager
def _removed_on_failure(library: str) -> Iterator[None]:
    """Remove the library file (and SQLite's files beside it) if the block fails and the file was new: a
    refused import leaves nothing behind. (A database on a server is not made here, so nothing is removed: the
    failed write was rolled back.)"""
    path = Path(library)
    created = not is_url(library) and not path.exists()
    try:
        yield
    except BaseException:
        if created:
            for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
                leftover.unlink(missing_ok=True)
        raise


@app.command("runs", cls=Command, epilog=examples("flex library runs gsm8k.flexlib"))
@handle_errors
def runs_cmd(
    library: LibArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the learn runs with their status; an unfinished one continues with `flex learn ... --resume`."""
    with Library.open_for_reading(library) as lib:
        runs = lib.runs()
    if as_json:
        out.print_json(data=[vars(r) for r in runs])
        return
    if not runs:
        out.print("no runs")
    for r in runs:
        # A learn run whose gate stopped before its verdict is unfinished too: `--resume --gate` judges it again.
        status = r.status if r.status in ("done", GATE_STOPPED) else "unfinished"
        started = datetime.fromtimestamp(r.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        out.print(
            f"{r.run_id}  {r.kind}  {status:<12}  started {started} UTC  task {r.task}  on {r.source}: "
            f"{r.solved + r.unsolved}/{r.total} done ({r.solved} solved), {r.failed} failed at the model",
            highlight=False,
            markup=False,
        )


@app.command(
    "review",
    cls=Command,
    epilog=examples("flex library review gsm8k.flexlib", "flex library review gsm8k.flexlib --approve all"),
)
@handle_errors
def review_cmd(
    library: LibArg,
    approve: Annotated[
        list[str] | None,
        typer.Option(
            "--approve",
            metavar="ID",
            help="Release this quarantined entry to retrieval (repeatable), or 'all'. Default: none, list them.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the imported entries waiting in quarantine (never shown to a model), or approve them."""
    with Library.open_for_reading(library) as lib:
        if not approve:
            waiting = lib.quarantined()
            if as_json:
                out.print_json(data=[e.to_dict() for e in waiting])
                return
            for e in waiting:
                out.print(experience_detail(e, []), highlight=False)
                out.print()
            out.print(
                f"{len(waiting)} entries in quarantine"
                + (f"; approve with: flex library review {library} --approve ID (or all)" if waiting else ""),
                highlight=False,
                markup=False,
            )
            return
        ids = [e.id for e in lib.quarantined()] if approve == ["all"] else approve
        with lib.transaction():
            for id in ids:
                lib.approve(id, reason="approved by flex library review")
    if as_json:
        out.print_json(data={"approved": ids})
        return
    out.print(f"approved {len(ids)} entries; they are retrieved from now on", highlight=False)


@app.command(
    "copy",
    cls=Command,
    epilog=examples(
        "flex library copy gsm8k.flexlib postgresql://flex@db.example/gsm8k",
        "flex library copy postgresql://flex@db.example/gsm8k back.flexlib",
    ),
)
@handle_errors
def copy_cmd(
    source: Annotated[str, typer.Argument(metavar="SRC", help="The library to copy: a file or a postgresql:// URL.")],
    dest: Annotated[
        str,
        typer.Argument(
            metavar="DST",
            help="An empty library to copy into: a new file, or an empty database named by a postgresql:// URL.",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print what was copied as JSON.")] = False,
) -> None:
    """Copy a whole library, losslessly, into a new one, between a file and a PostgreSQL database either way: the
    entries (ids, counters, timestamps), the event log, the runs (`--resume` goes on where the source stood), the
    outcome queue and the settings. The source is read in one snapshot; a copy that fails leaves DST as it was."""
    with Library.open_for_reading(source) as src, _removed_on_failure(dest), Library.open(dest) as dst:
        copied = copy_library(src, dst)
        where = dst.location
    if as_json:
        out.print_json(data={"from": src.location, "to": where, **vars(copied)})
        return
    out.print(
        f"copied {copied.experiences} experiences, {copied.events} events, {copied.runs} runs "
        f"({copied.run_problems} problem records) and {copied.outcomes} outcomes from {src.location} to {where}",
        highlight=False,
        markup=False,
    )
