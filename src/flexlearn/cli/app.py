"""The `flex` command. Thin: parses options, calls the library and loops, shows results."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from flexlearn import Library, __version__
from flexlearn.cli import (
    demo_cmd,
    experiments_cmd,
    library_cmd,
    mcp_cmd,
    queue_cmd,
    serve_cmd,
    solve_cmd,
    versions_cmd,
)
from flexlearn.cli.common import (
    HELP_MARKUP,
    Command,
    ConcurrencyOpt,
    CriticModelOpt,
    DistillerModelOpt,
    GuideAtOpt,
    KindOpt,
    MaxTokensOpt,
    ModelOpt,
    RetrieverOpt,
    SnapshotOpt,
    TaskOpt,
    TempOpt,
    TimeoutOpt,
    ToolsOpt,
    UpdaterModelOpt,
    build_agents,
    check_out_dir,
    examples,
    handle_errors,
    library_option,
    load_limited,
    open_library_for_reading,
    resolve_task,
    run_closing,
    setting,
)
from flexlearn.cli.eval_journal import EvalJournal, library_version
from flexlearn.cli.gating import GateOpt, gate_engine, load_check, print_verdict, run_gate
from flexlearn.cli.output import (
    ItemProgress,
    LiveStatus,
    category_table,
    err,
    meter_table,
    out,
    paired_table,
    progress_bar,
    results_table,
    stats_table,
)
from flexlearn.engine import (
    GATE_STOPPED,
    Engine,
    LearnSummary,
    Mode,
    Progress,
    Verdict,
    against_others,
    by_category,
    check_evaluation,
)
from flexlearn.errors import ConfigError
from flexlearn.models.middleware import Meter
from flexlearn.records import ItemRecord
from flexlearn.results import write_run
from flexlearn.settings import EVAL, LEARN, EvalSettings, LearnSettings
from flexlearn.tasks.base import problems_digest

app = typer.Typer(
    help="FLEX: agents that learn from experience without touching weights. "
    "Learn an experience library on training problems, then solve and evaluate with it.",
    epilog=examples(
        "flex demo           # learn and evaluate offline (6-16 min on 2 cores)",
        "flex learn --help   # every command has its own help, with examples",
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
)
queue_cmd.register(library_cmd.app)
app.add_typer(library_cmd.app, name="library")
versions_cmd.register(library_cmd.app)


def _version(value: bool) -> None:
    if value:
        out.print(f"flexlearn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", envvar="FLEX_VERBOSE", help="Also show llama.cpp's own log lines."),
    ] = False,
) -> None:
    """FLEX: forward learning from experience."""
    if verbose:
        os.environ["FLEX_VERBOSE"] = "1"


@app.command(
    "learn",
    cls=Command,
    epilog=examples(
        "flex learn --task gsm8k --train train.jsonl --library gsm8k.flexlib",
        "flex learn --task gsm8k --train train.jsonl --library gsm8k.flexlib \\",
        "    --model openai:gpt-4o-mini --concurrency 8",
    ),
)
@handle_errors(resume_hint="run the same command with --resume")
def learn_cmd(
    train: Annotated[Path, typer.Option("--train", help="Training problems, JSONL.")],
    library: Annotated[
        str,
        library_option(
            "Experience library: a file (created if missing), or a postgresql://... URL of a database (which must "
            "exist; an empty one becomes a library)."
        ),
    ],
    task: TaskOpt = None,
    model: ModelOpt = "local",
    critic_model: CriticModelOpt = None,
    distiller_model: DistillerModelOpt = None,
    updater_model: UpdaterModelOpt = None,
    prompt_kind: KindOpt = None,
    rollouts: Annotated[int | None, setting(LearnSettings, "rollouts")] = LEARN.rollouts,
    rounds: Annotated[int | None, setting(LearnSettings, "rounds")] = LEARN.rounds,
    all_rollouts: Annotated[bool, setting(LearnSettings, "all_rollouts")] = LEARN.all_rollouts,
    explore_shots: Annotated[int | None, setting(LearnSettings, "explore_shots")] = LEARN.explore_shots,
    concurrency: ConcurrencyOpt = LEARN.concurrency,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use only the first N training problems. Default: all.")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the newest unfinished learn run of this task and training file (--run picks another).",
        ),
    ] = False,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            metavar="RUN_ID",
            help="With --resume: the run to continue (flex library runs lists them). Default: the newest unfinished.",
        ),
    ] = None,
    explore_with_library: Annotated[bool, setting(LearnSettings, "explore_with_library")] = LEARN.explore_with_library,
    blind_critic: Annotated[bool, setting(LearnSettings, "blind_critic")] = LEARN.blind_critic,
    distiller_slots: Annotated[bool, setting(LearnSettings, "distiller_slots")] = LEARN.distiller_slots,
    tools: ToolsOpt = None,
    retriever: RetrieverOpt = LEARN.retriever,
    temperature: TempOpt = LEARN.temperature,
    max_tokens: MaxTokensOpt = LEARN.max_tokens,
    executor: Annotated[str, setting(LearnSettings, "executor", metavar="inprocess|ray")] = LEARN.executor,
    ray_address: Annotated[
        str | None, setting(LearnSettings, "ray_address", metavar="ADDRESS", show_default=False)
    ] = LEARN.ray_address,
    timeout: TimeoutOpt = 120.0,
    gate_check: GateOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    resume_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN_ID]",
            help="With --resume: the run to continue, as in `flex learn ... --resume RUN_ID` (the same as --run).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Forward exploration and experience evolution over a training set."""
    if resume_id is not None:
        if not resume:
            raise ConfigError(f"{resume_id!r} is not an option: to continue that run, add --resume before it")
        if run is not None and run != resume_id:
            raise ConfigError(f"two runs to resume: {resume_id!r} and --run {run!r}")
        run = resume_id
    settings = LearnSettings.pick(locals())
    the_task = resolve_task(task, library)
    problems = load_limited(the_task, train, limit)
    check = load_check(the_task, gate_check)
    if run is not None and not resume:
        raise ConfigError("--run names the run to resume: add --resume")
    meter = Meter()
    # Connecting checks that a local model's native code runs on this CPU, before anything is written.
    agents = build_agents(
        model,
        critic=critic_model,
        distiller=distiller_model,
        updater=updater_model,
        prompt_kind=prompt_kind,
        concurrency=settings.concurrency,
        timeout=timeout,
        meter=meter,
    )
    # Every option is checked above, before the library is opened: a refused command leaves no file behind. The
    # library, and the run to resume, are checked before a model is called; a run is resumed from a library that
    # exists, never from one this command would create.
    with Library.open(library, create=not resume) as lib:
        lib.check_writable()
        if resume:
            run = lib.resumable_run(
                "learn",
                task=the_task.name,
                problem_ids=[p.id for p in problems],
                run_id=run,
                problems_digest=problems_digest(problems),
            )
        with progress_bar("learn", len(problems)) as bar:
            status = LiveStatus(bar, bar.task_ids[0], meter)

            def on_progress(p: Progress) -> None:
                status.set(
                    f"solved {p.solved}/{max(p.done, 1)}  failed {p.failed}  library {lib.count()}", completed=p.done
                )

            engine = Engine.of(the_task, agents, lib, learning=settings)
            judged: set[str] = set()
            if isinstance(run, str) and lib.run_status(run) == GATE_STOPPED:
                # Its gate stopped before a verdict and rolled its lessons back: bring them back and judge them.
                if not check:
                    raise ConfigError(
                        f"run {run}'s gate stopped before its verdict, so its lessons were rolled back: resume with "
                        "--gate CHECK.jsonl to judge them again (`flex library versions` shows the version that held "
                        "them; `flex library rollback` brings it back unchecked)"
                    )
                reopened = engine.reopen_gate(run)
                if reopened is None:
                    raise ConfigError(f"run {run} is marked {GATE_STOPPED!r} but no stopped gate of it is logged")
                before, brought = reopened
                judged.add(brought)
            else:
                # The gate judges the whole run: every change since the library's version before its first
                # problem. (Read only under --gate: a resumed run's events are parsed to find its first one.)
                first = [ev.seq for ev in lib.events(run_id=run)] if check and isinstance(run, str) else []
                before = min(first) - 1 if first else lib.revision()

            async def learn_then_gate() -> tuple[LearnSummary, Verdict | None]:
                summary = await engine.learn(
                    problems, source=str(train), resume=(run or True) if resume else False, on_progress=on_progress
                )
                if not check:
                    return summary, None
                what = f"learn run {summary.run_id}"
                gated = gate_engine(engine, settings.concurrency)
                return summary, await run_gate(gated, before, check, what=what, runs={summary.run_id, *judged})

            summary, verdict = run_closing(agents, learn_then_gate())
        stats = lib.stats()
    if as_json:
        out.print_json(
            data={
                "summary": vars(summary),
                "library": stats,
                "models": agents.models(),
                "calls": meter.snapshot(),
                "gate": verdict.to_dict() if verdict else None,
            }
        )
        return
    out.print(
        f"run [bold]{summary.run_id}[/bold]{' (resumed)' if summary.resumed else ''}: "
        f"{summary.solved} solved, {summary.unsolved} unsolved, {summary.failed} failed of {summary.total} "
        f"in {summary.seconds:.1f}s; updater: {summary.actions['add']} added, {summary.actions['merge']} merged, "
        f"{summary.actions['discard']} discarded"
    )
    out.print(stats_table(stats))
    out.print(meter_table(meter, agents.models()))
    if verdict is not None:
        print_verdict(verdict)
    if summary.failed:
        err.print(f"[yellow]{summary.failed} problems failed at the model; run again with --resume to retry them[/]")


@app.command(
    "eval",
    cls=Command,
    epilog=examples(
        "flex eval --test test.jsonl --train train.jsonl --library gsm8k.flexlib \\",
        "    --out runs/gsm8k",
        "flex eval --task gsm8k --test test.jsonl --train train.jsonl \\",
        "    --modes vanilla,icl",
        "flex report runs/gsm8k     # an HTML page of the results",
    ),
)
@handle_errors
def eval_cmd(
    test: Annotated[Path, typer.Option("--test", help="Test problems, JSONL.")],
    task: TaskOpt = None,
    modes: Annotated[str | None, setting(EvalSettings, "modes", show_default=False)] = None,
    library: Annotated[
        str | None,
        library_option("Experience library (for flex mode): a file or a postgresql://... URL. Default: none."),
    ] = None,
    train: Annotated[
        Path | None, typer.Option("--train", help="Training JSONL, for icl mode's examples. Default: none.")
    ] = None,
    model: ModelOpt = "local",
    critic_model: CriticModelOpt = None,
    prompt_kind: KindOpt = None,
    icl_k: Annotated[int, setting(EvalSettings, "icl_k")] = EVAL.icl_k,
    agent_rounds: Annotated[int | None, setting(EvalSettings, "agent_rounds")] = EVAL.agent_rounds,
    budget_tokens: Annotated[int, setting(EvalSettings, "budget_tokens", "--budget")] = EVAL.budget_tokens,
    min_shared: Annotated[int, setting(EvalSettings, "min_shared")] = EVAL.min_shared,
    case_min_shared: Annotated[
        int | None, setting(EvalSettings, "case_min_shared", show_default=False)
    ] = EVAL.case_min_shared,
    concurrency: ConcurrencyOpt = EVAL.concurrency,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N test problems. Default: all.")] = None,
    seed: Annotated[int, setting(EvalSettings, "seed")] = EVAL.seed,
    repeats: Annotated[int, setting(EvalSettings, "repeats")] = EVAL.repeats,
    temperature: TempOpt = EVAL.temperature,
    max_tokens: MaxTokensOpt = EVAL.max_tokens,
    tools: ToolsOpt = None,
    retriever: RetrieverOpt = EVAL.retriever,
    guide_at: GuideAtOpt = EVAL.guide_at,
    timeout: TimeoutOpt = 120.0,
    snapshot: SnapshotOpt = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write results and every per-item record here, each item as it finishes: the same command run "
            "again after an interruption continues from them. Default: nowhere.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    per_category: Annotated[
        bool,
        typer.Option(
            "--by-category",
            help="Also print each mode's accuracy per kind of problem (the data's category field); --json always "
            "gives it.",
        ),
    ] = False,
) -> None:
    """Evaluate in the paper's modes; print the table and flex against each other mode, paired."""
    settings = EvalSettings.pick(locals())
    check_out_dir(out_dir)
    the_task = resolve_task(task, library)
    problems = load_limited(the_task, test, limit)
    train_problems = the_task.load(train) if train else []
    mode_list = settings.mode_list(library=library is not None, train=bool(train_problems))
    meter = Meter()
    lib = open_library_for_reading(library)
    started = time.time()
    try:
        # Everything that can be wrong with the arguments fails here, before a model is loaded or called.
        check_evaluation(settings, mode_list, library=lib, train=bool(train_problems))
        agents = build_agents(
            model,
            critic=critic_model,
            prompt_kind=prompt_kind,
            concurrency=settings.concurrency,
            timeout=timeout,
            meter=meter,
        )
        engine = Engine.of(the_task, agents, lib, evaluation=settings)
        # With --out, every finished item is kept as it finishes: the same command continues an interrupted run.
        journal = EvalJournal(
            out_dir,
            {
                "task": the_task.name,
                "test": problems_digest(problems),
                "train": problems_digest(train_problems),
                "models": agents.models("actor", "critic"),
                "config": {**settings.model_dump(mode="json"), "modes": [m.value for m in mode_list]},
                "library": lib.location if lib is not None else None,
                "library_version": library_version(lib),
            },
        )
        with journal, progress_bar("eval", len(problems) * len(mode_list) * settings.repeats) as bar:
            progress = ItemProgress(bar, bar.task_ids[0], meter)
            if journal.done:
                err.print(f"continuing the unfinished evaluation in {out_dir}: {len(journal.done)} items kept")
            if journal.dropped:
                err.print(f"the unfinished evaluation in {out_dir} had other settings: {journal.dropped} items dropped")

            def on_item(item: ItemRecord) -> None:
                progress(item)
                journal.record(item)

            results = run_closing(
                agents,
                engine.evaluate(
                    problems,
                    train=train_problems,
                    modes=mode_list,
                    on_item=on_item,
                    done=journal.done,
                ),
            )
        # Where flex mode used its experience (None without flex mode), and whether a critic judged attempts.
        guide = engine.guide_at if Mode.FLEX in mode_list else None
        judged = Mode.AGENT in mode_list or guide == "review"
        meta = {
            "task": the_task.name,
            "test": str(test),
            "train": str(train) if train else None,
            "library": lib.location if lib is not None else None,
            "model": agents.actor.name,
            # The critic plays only the blind judge of agent mode, and of flex mode at review.
            "models": agents.models("actor", "critic") if judged else agents.models("actor"),
            "started": started,
            "seconds": time.time() - started,
            # Every setting as run (by its settings name), the modes run and where flex used its experience.
            "config": {
                **settings.model_dump(mode="json"),
                "modes": [m.value for m in mode_list],
                "guide_at": guide,
                # The review loop's attempts as run (unset, they follow the model).
                "agent_rounds": engine.agent_rounds if judged else settings.agent_rounds,
                "limit": limit,
            },
            "calls": meter.snapshot(),
        }
        if out_dir is not None:
            write_run(out_dir, meta, results, lib, snapshot=snapshot)
            journal.finish()
    finally:
        if lib is not None:
            lib.close()
    # Flex against each baseline on the same problems, when it ran beside one.
    comparison = against_others(results, Mode.FLEX.value, seed=settings.seed)
    kinds = by_category(results)
    if as_json:
        summaries = [r.summary() for r in results]
        out.print_json(data={**meta, "results": summaries, "paired": comparison, "by_category": kinds})
        return
    out.print(results_table(results, f"{the_task.name} on {test.name} with {agents.actor.name}"))
    if comparison:
        out.print(paired_table(results, comparison, Mode.FLEX.value))
    if per_category:
        if kinds:
            out.print(category_table(kinds, [r.mode for r in results]))
        else:
            err.print("--by-category: the test problems name no category", highlight=False)
    if failed := sum(r.errors for r in results):
        err.print(f"[yellow]{failed} items failed at the model and count as wrong (the errors column)[/]")
    if out_dir is not None:
        out.print(f"results and per-item records: {out_dir}  (flex report {out_dir} makes an HTML page)")


# After the core commands, so `flex --help` lists them in the order of a workflow.
solve_cmd.register(app)
experiments_cmd.register(app)
demo_cmd.register(app)
serve_cmd.register(app)
mcp_cmd.register(app)
