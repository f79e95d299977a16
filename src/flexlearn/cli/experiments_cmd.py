"""`flex scaling`, `flex inherit` and `flex report`: the paper's experiments beyond the table, and the page."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flexlearn import Library
from flexlearn.cli.common import (
    Command,
    ConcurrencyOpt,
    CriticModelOpt,
    DistillerModelOpt,
    GuideAtOpt,
    KindOpt,
    MaxTokensOpt,
    ModelOpt,
    SnapshotOpt,
    TaskOpt,
    TempOpt,
    TimeoutOpt,
    UpdaterModelOpt,
    build_agents,
    examples,
    handle_errors,
    library_option,
    load_limited,
    resolve_task,
    run_closing,
    setting,
)
from flexlearn.cli.output import ItemProgress, err, out, progress_bar
from flexlearn.engine import Engine, ScalingPoint, available_sizes, parse_sizes
from flexlearn.errors import ConfigError
from flexlearn.models.middleware import Meter
from flexlearn.records import INHERIT, SCALING, Inherit, InheritRow, Scaling
from flexlearn.results import write_json, write_run
from flexlearn.settings import EVAL, EvalSettings, LearnSettings

LibraryOpt = Annotated[str, library_option("Experience library: a file or a postgresql://... URL.")]
TestOpt = Annotated[Path, typer.Option("--test", help="Test problems, JSONL (or the task's own format).")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Use only the first N test problems. Default: all.")]
RepeatsOpt = Annotated[int, setting(EvalSettings, "repeats")]
BudgetOpt = Annotated[int, setting(EvalSettings, "budget_tokens", "--budget")]


def register(app: typer.Typer) -> None:
    app.command(
        "scaling",
        cls=Command,
        epilog=examples(
            "flex scaling --library gsm8k.flexlib --test test.jsonl --out runs/scaling",
            "flex report runs/scaling   # draws the curve",
        ),
    )(scaling_cmd)
    app.command(
        "inherit",
        cls=Command,
        epilog=examples(
            "flex inherit --library small-model.flexlib --test test.jsonl \\",
            "    --model openai:gpt-4o-mini --own-library gpt4o-mini.flexlib \\",
            "    --out runs/inherit",
        ),
    )(inherit_cmd)
    app.command(
        "report",
        cls=Command,
        epilog=examples(
            "flex report flex-demo/run-20250101-120000   # a demo's run folder",
            "flex report runs/gsm8k --out gsm8k.html",
        ),
    )(report_cmd)


@handle_errors
def scaling_cmd(
    library: LibraryOpt,
    test: TestOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory for results, replays and the plot data.")],
    task: TaskOpt = None,
    sizes: Annotated[str, typer.Option(help="Training problems absorbed, e.g. 0,5,10,20,40,all.")] = "0,5,10,20,40,all",
    model: ModelOpt = "local",
    prompt_kind: KindOpt = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = EVAL.concurrency,
    repeats: RepeatsOpt = EVAL.repeats,
    budget_tokens: BudgetOpt = EVAL.budget_tokens,
    guide_at: GuideAtOpt = EVAL.guide_at,
    temperature: TempOpt = EVAL.temperature,
    max_tokens: MaxTokensOpt = EVAL.max_tokens,
    timeout: TimeoutOpt = 120.0,
    snapshot: SnapshotOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the points and fit as JSON.")] = False,
) -> None:
    """The scaling law of experience: replay the library to each size, evaluate flex mode on the same test set,
    fit accuracy = a + b ln(1 + size)."""
    the_task = resolve_task(task, library)
    problems = load_limited(the_task, test, limit)
    with Library.open_for_reading(library) as lib:
        size_list = parse_sizes(sizes, available_sizes(lib))
        meter = Meter()
        agents = build_agents(model, prompt_kind=prompt_kind, concurrency=concurrency, timeout=timeout, meter=meter)
        evaluation = EvalSettings.of(
            concurrency=concurrency,
            repeats=repeats,
            budget_tokens=budget_tokens,
            guide_at=guide_at,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        engine = Engine.of(the_task, agents, lib, evaluation=evaluation)
        started = time.time()
        with progress_bar("scaling", len(size_list) * len(problems) * repeats) as bar:
            on_item = ItemProgress(bar, bar.task_ids[0], meter)

            def on_point(point: ScalingPoint) -> None:
                err.print(
                    f"size {point.size:>5}: {point.experiences} experiences, "
                    f"{point.accuracy:.3f} [{point.ci_low:.3f}, {point.ci_high:.3f}]",
                    highlight=False,
                )
                meta = {
                    "task": the_task.name,
                    "test": str(test),
                    "library": lib.location,
                    "model": agents.actor.name,
                    "size": point.size,
                    "started": started,
                }
                with Library.open(out_dir / "libraries" / f"size-{point.size}.flexlib", create=False) as replayed:
                    write_run(out_dir / f"size-{point.size}", meta, [point.result], replayed, snapshot=snapshot)

            points, fit = run_closing(
                agents,
                engine.scaling(
                    problems, sizes=size_list, workdir=out_dir / "libraries", on_item=on_item, on_point=on_point
                ),
            )
    record = Scaling(
        task=the_task.name,
        model=agents.actor.name,
        models=agents.models("actor"),
        library=lib.location,
        test=str(test),
        started=started,
        seconds=time.time() - started,
        calls=meter.snapshot(),
        points=points,
        fit=fit,
    )
    write_json(out_dir / SCALING, record)
    if as_json:
        out.print_json(data=record.model_dump())
        return
    table = Table(title=f"Scaling law: {the_task.name} on {test.name} with {agents.actor.name}")
    for name in ("training problems", "experiences", "flex score", "95% CI", "n"):
        table.add_column(name, justify="right")
    for p in points:
        table.add_row(
            str(p.size), str(p.experiences), f"{p.accuracy:.3f}", f"{p.ci_low:.3f} - {p.ci_high:.3f}", str(p.n)
        )
    out.print(table)
    out.print(f"log-linear fit: {fit.formula}  (R² {fit.r2:.2f})" if fit else "too few sizes to fit a trend")
    out.print(f"run directory: {out_dir}  (flex report {out_dir} draws the curve)")


@handle_errors
def inherit_cmd(
    library: Annotated[
        str, library_option("The library learned with another model (M1): a file or a postgresql://... URL.")
    ],
    test: TestOpt,
    task: TaskOpt = None,
    model: ModelOpt = "local",
    critic_model: CriticModelOpt = None,
    distiller_model: DistillerModelOpt = None,
    updater_model: UpdaterModelOpt = None,
    own_library: Annotated[
        str | None,
        library_option(
            "A library learned by this model (M2) itself: a file or a postgresql://... URL. Default: none.",
            "--own-library",
        ),
    ] = None,
    train: Annotated[
        Path | None,
        typer.Option("--train", help="Learn M2's own library on this set first. Default: none."),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory for results. Default: none.")] = None,
    prompt_kind: KindOpt = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = EVAL.concurrency,
    repeats: RepeatsOpt = EVAL.repeats,
    budget_tokens: BudgetOpt = EVAL.budget_tokens,
    guide_at: GuideAtOpt = EVAL.guide_at,
    temperature: TempOpt = EVAL.temperature,
    max_tokens: MaxTokensOpt = EVAL.max_tokens,
    timeout: TimeoutOpt = 120.0,
    snapshot: SnapshotOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Experience inheritance: this model (M2) without a library, with M1's library, and with its own."""
    the_task = resolve_task(task, library)
    problems = load_limited(the_task, test, limit)
    train_problems = the_task.load(train) if train and own_library is None else []
    if out_dir is None and train_problems:
        raise ConfigError("learning M2's own library needs --out (it is written there) or pass --own-library")
    meter = Meter()
    agents = build_agents(
        model,
        critic=critic_model,
        distiller=distiller_model,
        updater=updater_model,
        prompt_kind=prompt_kind,
        concurrency=concurrency,
        timeout=timeout,
        meter=meter,
    )
    evaluation = EvalSettings.of(
        concurrency=concurrency,
        repeats=repeats,
        budget_tokens=budget_tokens,
        guide_at=guide_at,
        temperature=temperature,
        max_tokens=max_tokens,
    )
    started = time.time()
    with Library.open_for_reading(library) as inherited:
        own_path: str | Path | None = own_library
        if own_library is None and train_problems and out_dir is not None:
            own_path = out_dir / "own.flexlib"
            out_dir.mkdir(parents=True, exist_ok=True)  # the run folder, where the own library is learned
        # A given --own-library must exist; one learned here is created.
        with Library.open(own_path, create=own_library is None) if own_path else nullcontext() as own:
            learning = LearnSettings.of(concurrency=concurrency)
            engine = Engine.of(the_task, agents, own, learning=learning, evaluation=evaluation)

            async def learn_then_compare() -> list[InheritRow]:
                if train_problems and own is not None:
                    with progress_bar("learn (own library)", len(train_problems)) as bar:
                        await engine.learn(
                            train_problems,
                            source=str(train),
                            on_progress=lambda p: bar.update(
                                bar.task_ids[0], completed=p.done, status=f"solved {p.solved}"
                            ),
                        )
                total = len(problems) * repeats * (3 if own is not None else 2)
                with progress_bar("inherit", total) as bar:
                    return await engine.inherit(
                        problems, inherited=inherited, on_item=ItemProgress(bar, bar.task_ids[0], meter)
                    )

            rows = run_closing(agents, learn_then_compare())
    # The actor answers every setting; the other roles work only when M2's own library is learned here.
    models = agents.models() if train_problems else agents.models("actor")
    record = Inherit(
        task=the_task.name,
        model=agents.actor.name,
        models=models,
        test=str(test),
        inherited=inherited.location,
        started=started,
        seconds=time.time() - started,
        calls=meter.snapshot(),
        rows=rows,
    )
    data = record.model_dump()
    if out_dir is not None:
        write_json(out_dir / INHERIT, record)
        meta = {k: data[k] for k in ("task", "model", "models", "test", "started", "seconds", "calls")}
        for r in rows:
            r.result.mode = r.label
        # The folder refers to M1's library, the one this experiment is about (the own library's entries are in
        # the reference's `missing`; a learned one is in the folder already).
        results = [r.result for r in rows]
        with Library.open_for_reading(library) as inherited:
            write_run(out_dir, {**meta, "library": inherited.location}, results, inherited, snapshot=snapshot)
    if as_json:
        out.print_json(data=data)
        return
    table = Table(title=f"Experience inheritance: {the_task.name} on {test.name}")
    for name in ("setting", "score", "95% CI", "n", "library"):
        table.add_column(name)
    for r in data["rows"]:
        table.add_row(
            r["label"],
            f"{r['accuracy']:.3f}",
            f"{r['ci_low']:.3f} - {r['ci_high']:.3f}",
            str(r["n"]),
            r["library"] or "-",
        )
    out.print(table)
    if own_path is None:
        out.print("[dim]no own library for this model: pass --own-library, or --train with --out to learn one[/dim]")


@handle_errors
def report_cmd(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="FOLDER",
            help="Any folder a flexlearn command wrote: a demo's run folder, eval --out, scaling or inherit.",
        ),
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="HTML file to write. Default: FOLDER/report.html.")
    ] = None,
) -> None:
    """Write one self-contained HTML page: results table, scaling plot, library composition, drill-down."""
    from flexlearn.report import write_report
    from flexlearn.report.load import locate_run

    found, runs = locate_run(run_dir)
    if found != run_dir:
        newest = f" (the newest of {runs} runs)" if runs > 1 else ""
        err.print(f"reporting on {found}{newest}", highlight=False, soft_wrap=True)
    path = write_report(run_dir, out_file)
    out.print(f"wrote {path}", highlight=False, soft_wrap=True)
