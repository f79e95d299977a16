"""`flex library ...`: inspect, search, export and import an experience library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flexlearn.cli.common import handle_errors
from flexlearn.cli.output import experience_detail, experience_line, out, stats_table
from flexlearn.errors import ConfigError
from flexlearn.experience import Level, Zone
from flexlearn.library.formats import export_json, import_file, to_markdown
from flexlearn.library.store import Library

app = typer.Typer(help="Inspect, search, export and import an experience library.", no_args_is_help=True)

LibArg = Annotated[Path, typer.Argument(help="Experience library file.")]


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


@app.command("stats")
@handle_errors
def stats_cmd(
    library: LibArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print counts as JSON.")] = False,
) -> None:
    """Counts by zone and level, and the updater's decisions."""
    with Library.open(library, create=False) as lib:
        stats = lib.stats()
    if as_json:
        out.print_json(data=stats)
        return
    out.print(stats_table(stats))
    out.print("updater log: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["events"].items())))


@app.command("show")
@handle_errors
def show_cmd(
    library: LibArg,
    entry: Annotated[str | None, typer.Argument(help="An experience id: show it in full with its history.")] = None,
    zone: Annotated[str | None, typer.Option(help="golden or warning.")] = None,
    level: Annotated[str | None, typer.Option(help="principle, pattern or case.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List entries, or show one with its event history."""
    with Library.open(library, create=False) as lib:
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


@app.command("search")
@handle_errors
def search_cmd(
    library: LibArg,
    query: Annotated[str, typer.Argument(help="Text to search for (BM25 over titles, contents and examples).")],
    k: Annotated[int, typer.Option("-k", min=1, help="Number of results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Lexical search of the library."""
    with Library.open(library, create=False) as lib:
        hits = lib.search(query, k=k)
    if as_json:
        out.print_json(data=[{"score": s, **e.to_dict()} for e, s in hits])
        return
    if not hits:
        out.print("no match")
    for e, score in hits:
        out.print(f"{score:6.2f}  " + experience_line(e), highlight=False)


@app.command("export")
@handle_errors
def export_cmd(
    library: LibArg,
    dest: Annotated[Path, typer.Argument(help="Output file (.json, or .md for Markdown).")],
) -> None:
    """Export to the portable JSON format (see the README), or Markdown for reading."""
    with Library.open(library, create=False) as lib:
        if dest.suffix.lower() in (".md", ".markdown"):
            dest.write_text(to_markdown(lib), encoding="utf-8")
            out.print(f"wrote {dest}")
        else:
            n = export_json(lib, dest)
            out.print(f"wrote {n} experiences to {dest}")


@app.command("import")
@handle_errors
def import_cmd(
    library: LibArg,
    source: Annotated[Path, typer.Argument(help="A flexlearn JSON export, or a FLEX reference library (exps/*.json).")],
    model: Annotated[str, typer.Option(help="Record this model as the source of the imported entries.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Import experiences; the library is created if missing. Re-importing the same file adds nothing."""
    with Library.open(library) as lib:
        result = import_file(lib, source, source_model=model)
        stats = lib.stats()
    if as_json:
        out.print_json(
            data={
                "added": result.added,
                "skipped": result.skipped,
                "format": result.format,
                "warnings": result.warnings,
                "library": stats,
            }
        )
        return
    out.print(f"imported {result.added} experiences ({result.skipped} already present) from {source} [{result.format}]")
    for w in result.warnings[:20]:
        out.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    out.print(stats_table(stats))
