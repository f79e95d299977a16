"""`flex demo`: learn on a shipped slice, evaluate the held-out slice in the four modes, show what was learned.

The orchestration lives in `flexlearn.demo`; this module is its command line.
"""

from __future__ import annotations

import os
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from flexlearn import Library
from flexlearn.cli.common import (
    Command,
    CriticModelOpt,
    DistillerModelOpt,
    KindOpt,
    ModelOpt,
    SnapshotOpt,
    TimeoutOpt,
    UpdaterModelOpt,
    build_agents,
    examples,
    handle_errors,
    run_closing,
    setting,
)
from flexlearn.cli.eval_journal import EvalJournal, unfinished
from flexlearn.cli.output import (
    ItemProgress,
    LiveStatus,
    err,
    experience_line,
    meter_table,
    out,
    paired_table,
    progress_bars,
    results_table,
    start_stage,
    stats_table,
    tokens_per_second,
)
from flexlearn.demo import FORMULA_TEST, FORMULA_TRAIN, demo_data, plan, run_demo
from flexlearn.engine import Progress, against_others
from flexlearn.errors import ConfigError
from flexlearn.experience import Experience, Level, Zone
from flexlearn.models.embedded import is_embedded_instruct
from flexlearn.models.middleware import Meter
from flexlearn.records import ItemRecord
from flexlearn.results import write_run
from flexlearn.settings import EvalSettings


def demo_cmd(
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            "-t",
            help="Shipped slice: word_facts, gsm8k, formula (finance formulas) or arithmetic (the README's "
            "examples). Default: word_facts; formula for an embedded instruction model.",
        ),
    ] = None,
    model: ModelOpt = "local",
    critic_model: CriticModelOpt = None,
    distiller_model: DistillerModelOpt = None,
    updater_model: UpdaterModelOpt = None,
    prompt_kind: KindOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the run folder is created.")] = Path("flex-demo"),
    snapshot: SnapshotOpt = False,
    train_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Training problems. Default: 24 for word_facts, 10 for gsm8k, {FORMULA_TRAIN} for formula (one "
            "per formula of the held-out slice), 8 for arithmetic.",
        ),
    ] = None,
    test_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Held-out problems. Default: 30 for word_facts, 20 for gsm8k, {FORMULA_TEST} for formula (of the "
            "formulas learned), 6 for arithmetic.",
        ),
    ] = None,
    rollouts: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Rollouts per training problem. Default: 3; 1 with an embedded instruction model.",
            show_default=False,
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Actor/critic rounds per rollout (kept short for a demo).")] = 2,
    # The one --concurrency help of every command; the default for an embedded instruction model is in the docstring.
    concurrency: Annotated[
        int | None,
        setting(EvalSettings, "concurrency", show_default="1, or 2 with an embedded instruction model on 2+ cores"),
    ] = None,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Learn on a small shipped training slice, evaluate a held-out slice in all four modes, show the results.

    Runs offline on the embedded Gemma 3 270M when no model is given. Interrupted, it continues where it stopped
    when run again with the same options (same run folder; finished learning and evaluated items are kept). With
    an embedded instruction model (local:qwen2.5-coder-1.5b) it runs the Formula demo (finance formulas from
    ACE's benchmark): a few problems to learn, held-out problems of the same formulas to test, one rollout, and
    --concurrency 2 on a machine of 2 cores or more (two single-threaded model workers there, the local backend's
    default): about 15 minutes."""
    if str(out_dir).startswith(("postgresql:", "postgres:")):
        # A Path has already made the URL's `//` one `/`: say what --out is rather than make that folder.
        raise ConfigError(
            "flex demo learns into a library file of its own run folder, so --out is a folder, not a database URL; "
            "to put the demo's library on a server afterwards: flex library copy RUN/library.flexlib postgresql://..."
        )
    instruct = is_embedded_instruct(model)
    task = task or ("formula" if instruct else "word_facts")
    # An embedded instruction model is slow here (~10-20 tok/s a core): one rollout (its learning default) and both
    # cores busy keep the demo near 15 minutes (docs/local-model-measurements.md).
    if concurrency is None:
        concurrency = 2 if instruct and (os.cpu_count() or 1) >= 2 else 1
    demo = plan(
        task, train_size=train_size, test_size=test_size, rollouts=rollouts, rounds=rounds, concurrency=concurrency
    )
    meter = Meter()
    # Connecting checks that a local model's native code runs on this CPU, before the run folder is made.
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
    key = {
        "demo": task,
        "models": agents.models(),
        "train": [p.id for p in demo.train],
        "test": [p.id for p in demo.test],
        "rollouts": rollouts,
        "rounds": rounds,
    }
    run_dir = unfinished_run(out_dir, key)
    if run_dir is None:
        run_dir = out_dir / f"run-{datetime.now():%Y%m%d-%H%M%S}"
        run_dir.mkdir(parents=True, exist_ok=False)
    else:
        err.print(f"continuing the unfinished demo in {run_dir}", highlight=False)
    library_path = run_dir / "library.flexlib"
    err.print(
        f"FLEX demo on [bold]{task}[/bold] ({demo.task.name} task): learn on {len(demo.train)} training problems, "
        f"then evaluate {len(demo.test)} held-out problems in modes vanilla, icl, agent, flex "
        f"with [bold]{agents.actor.name}[/bold]",
        highlight=False,
    )
    started = time.time()
    # The run folder's journal keeps every evaluated item as it finishes; its key (the demo's settings) marks the
    # folder unfinished from the start, so an interruption while learning continues here too.
    with EvalJournal(run_dir, key) as journal, Library.open(library_path) as lib:
        with progress_bars(("learn", len(demo.train)), ("eval", len(demo.test) * len(demo.eval.modes or ()))) as (
            bar,
            ids,
        ):
            learning = LiveStatus(bar, ids[0], meter)

            def on_learn(p: Progress) -> None:
                learning.set(f"solved {p.solved}  library {lib.count()}", completed=p.done)
                if p.done >= len(demo.train):
                    start_stage(bar, ids[1])

            progress = ItemProgress(bar, ids[1], meter)

            def on_item(item: ItemRecord) -> None:
                progress(item)
                journal.record(item)

            outcome = run_closing(
                agents,
                run_demo(demo, agents=agents, library=lib, on_learn=on_learn, on_item=on_item, done=journal.done),
            )
        stats = lib.stats()
        examples = pick_examples(lib)
        seconds = time.time() - started
        total = meter.total()
        rate = tokens_per_second(total.completion_tokens, total.latency_s)
        meta = {
            "demo": task,
            "task": demo.task.name,
            "train": str(demo_data(task)[0]),
            "test": str(demo_data(task)[1]),
            "model": agents.actor.name,
            "models": agents.models(),
            "library": str(library_path),
            "started": started,
            "seconds": seconds,
            "completion_tokens_per_second": rate,
            "learn": vars(outcome.summary),
            "calls": meter.snapshot(),
            "train_size": len(demo.train),
            "test_size": len(demo.test),
        }
        write_run(run_dir / "eval", meta, outcome.results, lib, snapshot=snapshot)
        journal.finish()
    comparison = against_others(outcome.results)
    if as_json:
        summaries = [r.summary() for r in outcome.results]
        out.print_json(data={**meta, "results": summaries, "paired": comparison, "library_stats": stats})
        return
    out.print(
        results_table(outcome.results, f"FLEX demo: {task} ({len(demo.test)} held-out problems), {agents.actor.name}")
    )
    if comparison:
        out.print(paired_table(outcome.results, comparison))
    out.print(stats_table(stats))
    for e in examples:
        out.print(experience_line(e), highlight=False)
    out.print(meter_table(meter, agents.models()))
    out.print(
        f"\nlearned from {len(demo.train)} problems ({outcome.summary.solved} solved while exploring) in "
        f"{outcome.summary.seconds:.0f}s, evaluated in {seconds - outcome.summary.seconds:.0f}s; "
        f"{rate:.1f} completion tokens/s",
        highlight=False,
    )
    out.print(f"library:   {library_path}", highlight=False, soft_wrap=True)
    out.print(f"run files: {run_dir}", highlight=False, soft_wrap=True)
    if agents.actor.name.startswith("local:"):
        out.print(
            "[dim]The 270M model shows the mechanics; a capable model (--model openai:...) shows the gains.[/dim]"
        )
    question = demo.test[0].question if demo.test else "..."
    out.print("\n[bold]Next, try:[/bold]")
    for command, why in (
        (f"flex report {run_dir}", f"an HTML page of this run: {run_dir / 'report.html'}"),
        (f"flex library show {library_path}", "the experiences it learned, with their history"),
        (f"flex solve --library {library_path} {shlex.quote(question)}", "one question with retrieved guidance"),
    ):
        out.print(f"  {escape(command)}\n      [dim]{why}[/dim]", highlight=False, soft_wrap=True)


def unfinished_run(out_dir: Path, key: dict[str, Any]) -> Path | None:
    """The newest run folder under `out_dir` of a demo run with the same settings that did not finish, if any."""
    if not out_dir.is_dir():
        return None
    return next((f for f in sorted(out_dir.glob("run-*"), reverse=True) if unfinished(f, key)), None)


def pick_examples(lib: Library) -> list[Experience]:
    """Two or three entries worth showing: a golden case, a warning, and a principle if there is one."""
    picks: list[Experience] = []
    for zone, level in ((Zone.GOLDEN, Level.CASE), (Zone.WARNING, None), (None, Level.PRINCIPLE)):
        for e in lib.list(zone=zone, level=level):
            if e.id not in {p.id for p in picks}:
                picks.append(e)
                break
    return picks


def register(app: typer.Typer) -> None:
    """Add `flex demo` to the app."""
    app.command(
        "demo",
        cls=Command,
        epilog=examples(
            "flex demo                              # offline, the embedded Gemma 3 270M",
            "flex demo --task gsm8k --model openai:gpt-4o-mini",
            "flex demo --train-size 8 --test-size 10   # a quicker look",
            "flex demo --model local:qwen2.5-coder-1.5b   # an instruction model, offline",
        ),
    )(handle_errors(demo_cmd))
