"""The `flex` command. Thin: parses options, calls the library and loops, shows results."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from flexlearn import __version__
from flexlearn.cli import experiments_cmd, library_cmd
from flexlearn.cli.common import (
    CriticModelOpt,
    DistillerModelOpt,
    KindOpt,
    MaxTokensOpt,
    ModelOpt,
    TaskOpt,
    TempOpt,
    TimeoutOpt,
    UpdaterModelOpt,
    build_agents,
    handle_errors,
    load_limited,
    run_closing,
)
from flexlearn.cli.output import (
    ItemProgress,
    err,
    experience_line,
    meter_table,
    out,
    progress_bar,
    progress_bars,
    results_table,
    stats_table,
    tokens_per_second,
    tokens_text,
)
from flexlearn.demo import demo_data, plan, run_demo
from flexlearn.experience import Experience, Level, Zone
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.evaluate import EvalConfig, Mode, evaluate, parse_modes, solve
from flexlearn.loop.explore import ExploreConfig, exploration_defaults
from flexlearn.loop.learn import LearnConfig, Progress, learn
from flexlearn.loop.results import write_run
from flexlearn.models.base import GenerationOptions
from flexlearn.models.middleware import Meter
from flexlearn.tasks import get_task

app = typer.Typer(
    help="FLEX: agents that learn from experience without touching weights. "
    "Learn an experience library on training problems, then solve and evaluate with it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(library_cmd.app, name="library")


def _version(value: bool) -> None:
    if value:
        out.print(f"flexlearn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """FLEX: forward learning from experience."""


@app.command("learn")
@handle_errors
def learn_cmd(
    train: Annotated[Path, typer.Option("--train", help="Training problems, JSONL.")],
    library: Annotated[Path, typer.Option("--library", "-l", help="Experience library file (created if missing).")],
    task: TaskOpt = "math",
    model: ModelOpt = None,
    critic_model: CriticModelOpt = None,
    distiller_model: DistillerModelOpt = None,
    updater_model: UpdaterModelOpt = None,
    prompt_kind: KindOpt = None,
    rollouts: Annotated[
        int | None, typer.Option(min=1, help="Rollouts per problem [default: 3, as in the paper].")
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(min=1, help="Actor/critic rounds per rollout [default: 5 as in the paper; 2 for local models]."),
    ] = None,
    all_rollouts: Annotated[bool, typer.Option(help="Run every rollout even after a success.")] = False,
    explore_shots: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worked training examples in the actor's prompt while exploring [default: 0; 3 for base models].",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Problems explored at once.")] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N training problems.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the library's last, interrupted learn run.")
    ] = False,
    temperature: TempOpt = None,
    max_tokens: MaxTokensOpt = None,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Forward exploration and experience evolution over a training set."""
    the_task = get_task(task)
    problems = load_limited(the_task, train, limit)
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
    defaults = exploration_defaults(agents.actor)
    config = LearnConfig(
        explore=ExploreConfig(
            rollouts=rollouts or defaults.rollouts,
            rounds=rounds or defaults.rounds,
            stop_on_success=not all_rollouts,
            shots=defaults.shots if explore_shots is None else explore_shots,
            actor=GenerationOptions(temperature=temperature, max_tokens=max_tokens),
        ),
        concurrency=concurrency,
    )
    with Library.open(library) as lib, progress_bar("learn", len(problems)) as bar:

        def on_progress(p: Progress) -> None:
            bar.update(
                bar.task_ids[0],
                completed=p.done,
                status=f"solved {p.solved}/{max(p.done, 1)}  failed {p.failed}  "
                f"library {lib.count()}  {tokens_text(meter)}",
            )

        summary = run_closing(
            agents,
            learn(
                problems,
                task=the_task,
                agents=agents,
                library=lib,
                config=config,
                source=str(train),
                resume=resume,
                on_progress=on_progress,
            ),
        )
        stats = lib.stats()
    if as_json:
        out.print_json(
            data={"summary": vars(summary), "library": stats, "models": agents.models(), "calls": meter.snapshot()}
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
    if summary.failed:
        err.print(f"[yellow]{summary.failed} problems failed at the model; run again with --resume to retry them[/]")


@app.command("eval")
@handle_errors
def eval_cmd(
    test: Annotated[Path, typer.Option("--test", help="Test problems, JSONL.")],
    task: TaskOpt = "math",
    modes: Annotated[str, typer.Option(help="Comma-separated: vanilla, icl, agent, flex.")] = "vanilla,icl,agent,flex",
    library: Annotated[Path | None, typer.Option("--library", "-l", help="Experience library (for flex mode).")] = None,
    train: Annotated[
        Path | None, typer.Option("--train", help="Training JSONL (ICL examples are drawn from it).")
    ] = None,
    model: ModelOpt = None,
    critic_model: CriticModelOpt = None,
    prompt_kind: KindOpt = None,
    icl_k: Annotated[int, typer.Option(min=1, help="Worked examples in icl mode.")] = 3,
    agent_rounds: Annotated[int, typer.Option(min=1, help="Actor/critic rounds in agent mode.")] = 3,
    budget: Annotated[
        int, typer.Option(min=50, help="Token budget for retrieved experience in flex mode.")
    ] = DEFAULT_LIMITS.retrieval_budget_tokens,
    concurrency: Annotated[int, typer.Option(min=1, help="Problems evaluated at once.")] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N test problems.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the choice of ICL examples and the bootstrap.")] = 0,
    repeats: Annotated[
        int, typer.Option(min=1, help="Samples per problem: pass@1 averaged over them (set --temperature > 0).")
    ] = 1,
    temperature: TempOpt = None,
    max_tokens: MaxTokensOpt = None,
    timeout: TimeoutOpt = 120.0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write results and every per-item record here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Evaluate in the paper's modes and print the table."""
    mode_list = parse_modes(modes)
    the_task = get_task(task)
    problems = load_limited(the_task, test, limit)
    train_problems = the_task.load(train) if train else []
    meter = Meter()
    config = EvalConfig(
        icl_k=icl_k,
        agent_rounds=agent_rounds,
        budget_tokens=budget,
        concurrency=concurrency,
        seed=seed,
        repeats=repeats,
        actor=GenerationOptions(temperature=temperature, max_tokens=max_tokens),
    )
    lib = Library.open(library, create=False) if library is not None else None
    started = time.time()
    try:
        agents = build_agents(
            model,
            critic=critic_model,
            prompt_kind=prompt_kind,
            concurrency=concurrency,
            timeout=timeout,
            meter=meter,
        )
        with progress_bar("eval", len(problems) * len(mode_list) * repeats) as bar:
            on_item = ItemProgress(bar, bar.task_ids[0], meter)
            results = run_closing(
                agents,
                evaluate(
                    problems,
                    task=the_task,
                    modes=mode_list,
                    agents=agents,
                    config=config,
                    library=lib,
                    train=train_problems,
                    on_item=on_item,
                ),
            )
        meta = {
            "task": the_task.name,
            "test": str(test),
            "train": str(train) if train else None,
            "library": str(library) if library else None,
            "model": agents.actor.name,
            # The critic plays only the blind judge of agent mode here.
            "models": agents.models("actor", "critic") if Mode.AGENT in mode_list else agents.models("actor"),
            "started": started,
            "seconds": time.time() - started,
            "config": {
                "icl_k": icl_k,
                "agent_rounds": agent_rounds,
                "budget": budget,
                "seed": seed,
                "temperature": temperature,
                "limit": limit,
                "repeats": repeats,
            },
            "calls": meter.snapshot(),
        }
        if out_dir is not None:
            write_run(out_dir, meta, results, lib)
    finally:
        if lib is not None:
            lib.close()
    if as_json:
        out.print_json(data={**meta, "results": [r.summary() for r in results]})
        return
    out.print(results_table(results, f"{the_task.name} on {test.name} with {agents.actor.name}"))
    if out_dir is not None:
        out.print(f"results and per-item records: {out_dir}  (flex report {out_dir} makes an HTML page)")


@app.command("solve")
@handle_errors
def solve_cmd(
    question: Annotated[str, typer.Argument(help="The problem to solve.")],
    library: Annotated[
        Path | None, typer.Option("--library", "-l", help="Experience library to draw guidance from.")
    ] = None,
    task: TaskOpt = "math",
    model: ModelOpt = None,
    prompt_kind: KindOpt = None,
    budget: Annotated[
        int, typer.Option(min=50, help="Token budget for retrieved experience.")
    ] = DEFAULT_LIMITS.retrieval_budget_tokens,
    show_guidance: Annotated[bool, typer.Option(help="Print the retrieved experiences.")] = False,
    temperature: TempOpt = None,
    max_tokens: MaxTokensOpt = None,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Solve one question with guidance retrieved from the library."""
    the_task = get_task(task)
    meter = Meter()
    lib = Library.open(library, create=False) if library is not None else None
    try:
        agents = build_agents(model, prompt_kind=prompt_kind, concurrency=1, timeout=timeout, meter=meter)
        solution = run_closing(
            agents,
            solve(
                question,
                task=the_task,
                agents=agents,
                library=lib,
                budget_tokens=budget,
                options=GenerationOptions(temperature=temperature, max_tokens=max_tokens),
            ),
        )
    finally:
        if lib is not None:
            lib.close()
    if as_json:
        out.print_json(
            data={
                "answer": solution.answer,
                "reply": solution.reply,
                "guidance": [e.id for e in solution.guidance],
                "usage": vars(solution.usage),
            }
        )
        return
    if show_guidance:
        for e in solution.guidance:
            out.print(experience_line(e))
        out.print()
    out.print(solution.reply.strip(), highlight=False, markup=False)
    out.print(f"\n[bold]answer:[/bold] {solution.answer}", highlight=False)


@app.command("demo")
@handle_errors
def demo_cmd(
    task: Annotated[
        str, typer.Option("--task", "-t", help="Shipped slice: word_facts (default) or gsm8k.")
    ] = "word_facts",
    model: ModelOpt = None,
    critic_model: CriticModelOpt = None,
    distiller_model: DistillerModelOpt = None,
    updater_model: UpdaterModelOpt = None,
    prompt_kind: KindOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the run folder is created.")] = Path("flex-demo"),
    train_size: Annotated[int | None, typer.Option(min=1, help="Training problems (default per slice).")] = None,
    test_size: Annotated[int | None, typer.Option(min=1, help="Held-out problems (default per slice).")] = None,
    rollouts: Annotated[int, typer.Option(min=1, help="Rollouts per training problem.")] = 3,
    rounds: Annotated[int, typer.Option(min=1, help="Actor/critic rounds per rollout (kept short for a demo).")] = 2,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Problems at once (the local model runs one call at a time).")
    ] = 1,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Learn on a small shipped training slice, evaluate a held-out slice in all four modes, show the results.

    Runs offline on the embedded Gemma 3 270M when no model is given."""
    demo = plan(
        task, train_size=train_size, test_size=test_size, rollouts=rollouts, rounds=rounds, concurrency=concurrency
    )
    run_dir = out_dir / f"run-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=False)
    library_path = run_dir / "library.flexlib"
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
    demo.learn.explore.shots = exploration_defaults(agents.actor).shots
    err.print(
        f"FLEX demo on [bold]{task}[/bold] ({demo.task.name} task): learn on {len(demo.train)} training problems, "
        f"then evaluate {len(demo.test)} held-out problems in modes vanilla, icl, agent, flex "
        f"with [bold]{agents.actor.name}[/bold]",
        highlight=False,
    )
    started = time.time()
    with Library.open(library_path) as lib:
        with progress_bars(("learn", len(demo.train)), ("eval", len(demo.test) * len(demo.modes))) as (bar, ids):

            def on_learn(p: Progress) -> None:
                bar.update(
                    ids[0], completed=p.done, status=f"solved {p.solved}  library {lib.count()}  {tokens_text(meter)}"
                )

            on_item = ItemProgress(bar, ids[1], meter)

            outcome = run_closing(
                agents, run_demo(demo, agents=agents, library=lib, on_learn=on_learn, on_item=on_item)
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
        write_run(run_dir / "eval", meta, outcome.results, lib)
    if as_json:
        out.print_json(data={**meta, "results": [r.summary() for r in outcome.results], "library_stats": stats})
        return
    out.print(
        results_table(outcome.results, f"FLEX demo: {task} ({len(demo.test)} held-out problems), {agents.actor.name}")
    )
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
    out.print(f"library:  {library_path}   (try: flex library show {library_path})", highlight=False)
    out.print(f"run files: {run_dir / 'eval'}   (results.json, items.jsonl)", highlight=False)
    if agents.actor.name.startswith("local:"):
        out.print(
            "[dim]The 270M model shows the mechanics; a capable model (--model openai:...) shows the gains.[/dim]"
        )


def pick_examples(lib: Library) -> list[Experience]:
    """Two or three entries worth showing: a golden case, a warning, and a principle if there is one."""
    picks: list[Experience] = []
    for zone, level in ((Zone.GOLDEN, Level.CASE), (Zone.WARNING, None), (None, Level.PRINCIPLE)):
        for e in lib.list(zone=zone, level=level):
            if e.id not in {p.id for p in picks}:
                picks.append(e)
                break
    return picks


# After the core commands, so `flex --help` lists them in the order of a workflow.
experiments_cmd.register(app)
