"""`flex library versions | diff | rollback`: a library's history of absorbed batches, and the way back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flexlearn import Library
from flexlearn.cli.common import Command, examples, handle_errors, library_argument
from flexlearn.cli.output import experience_line, out
from flexlearn.library import history

LibArg = Annotated[str, library_argument()]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


def register(app: typer.Typer) -> None:
    app.command(
        "versions",
        cls=Command,
        epilog=examples("flex library versions gsm8k.flexlib --limit 10", "flex library versions gsm8k.flexlib --json"),
    )(versions_cmd)
    app.command(
        "diff",
        cls=Command,
        epilog=examples(
            "flex library diff gsm8k.flexlib 120        # from version 120 to now",
            "flex library diff gsm8k.flexlib 120 180",
        ),
    )(diff_cmd)
    app.command(
        "rollback",
        cls=Command,
        epilog=examples('flex library rollback gsm8k.flexlib 120 --reason "that batch hurt"'),
    )(rollback_cmd)


@handle_errors
def versions_cmd(
    library: LibArg,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the newest N. Default: all.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the library's versions: one per absorbed batch (a learned problem, a recorded outcome, an import, a
    rollback) or manual change, numbered by the library's revision right after it."""
    with Library.open_for_reading(library) as lib:
        found = history.versions(lib)
        name = lib.location if lib.path is None else lib.path.name
    shown = found[-limit:] if limit else found
    if as_json:
        out.print_json(data=[v.to_dict() for v in shown])
        return
    table = Table(title=f"{escape(name)}: {len(found)} versions" + (f", newest {len(shown)}" if limit else ""))
    for name in ("version", "kind", "run", "problem", "changes", "when"):
        table.add_column(name, justify="right" if name == "version" else "left")
    for v in shown:
        changes = ", ".join(f"{k} {n}" for k, n in sorted(v.actions.items()))
        when = datetime.fromtimestamp(v.created_at).strftime("%Y-%m-%d %H:%M")
        table.add_row(str(v.number), v.kind, escape(v.run_id or "-"), escape(v.problem_id or "-"), changes, when)
    out.print(table)


@handle_errors
def diff_cmd(
    library: LibArg,
    old: Annotated[int, typer.Argument(metavar="V1", help="The version to compare from (0: the empty library).")],
    new: Annotated[
        int | None,
        typer.Argument(
            metavar="[V2]", help="The version to compare to. Default: the library as it is now.", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two versions: entries added, removed, and changed (before and after)."""
    with Library.open_for_reading(library) as lib:
        d = history.diff(lib, old, new)
    if as_json:
        out.print_json(data={"from": old, "to": new, **d.to_dict()})
        return
    counts = d.counts()
    out.print(
        f"version {old} -> {'now' if new is None else f'version {new}'}: "
        f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed",
        highlight=False,
    )
    for e in d.added:
        out.print(f"[green]+[/green] {experience_line(e)}", highlight=False)
    for e in d.removed:
        out.print(f"[red]-[/red] {experience_line(e)}", highlight=False)
    for before, after in d.changed:
        out.print(f"[yellow]~[/yellow] {experience_line(before)}", highlight=False)
        out.print(f"  [yellow]->[/yellow] {experience_line(after)}", highlight=False)


@handle_errors
def rollback_cmd(
    library: LibArg,
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The version to go back to (0: empty).")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the log. Default: none.", show_default=False)] = "",
    as_json: JsonOpt = False,
) -> None:
    """Bring the entries back to a version. Nothing is erased: the rollback is written to the log as ordinary
    changes under a run of kind rollback, and is itself a version that can be rolled back."""
    with Library.open(library, create=False) as lib:
        lib.check_writable()
        before = lib.revision()
        run_id, undone = history.rollback(lib, version, reason=reason)
        now = lib.revision()
    counts = undone.counts()
    if as_json:
        out.print_json(data={"run_id": run_id, "to": version, "from": before, "version": now, "undone": counts})
        return
    out.print(
        f"rolled back to version {version} (run {run_id}, now version {now}): "
        f"removed {counts['added']}, restored {counts['removed']}, reverted {counts['changed']}; "
        f"to undo it: flex library rollback {library} {before}",
        highlight=False,
    )
