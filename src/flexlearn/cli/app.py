"""The `flex` command. Thin: parses options, calls the library and loops, shows results."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from flexlearn import __version__
from flexlearn.agents.tools import parse_tools
from flexlearn.cli import demo_cmd, experiments_cmd, library_cmd, mcp_cmd, serve_cmd
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
    load_limited,
    open_library_for_reading,
    resolve_task,
    run_closing,
)
from flexlearn.cli.output import (
    ItemProgress,
    LiveStatus,
    err,
    experience_line,
    meter_table,
    out,
    progress_bar,
    results_table,
    stats_table,
)
from flexlearn.errors import ConfigError
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.episode import guide_at_default
from flexlearn.loop.evaluate import EvalConfig, Mode, check_modes, evaluate, parse_modes, solve
from flexlearn.loop.explore import ExploreConfig, exploration_defaults
from flexlearn.loop.learn import LearnConfig, Progress, learn
from flexlearn.loop.results import write_run
from flexlearn.models.base import GenerationOptions
from flexlearn.models.middleware import Meter
from flexlearn.retrieval import DEFAULT_RETRIEVER, get_retriever
from flexlearn.retrieval.registry import check_retriever
from flexlearn.tasks.loader import check_question_length

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
    library: Annotated[Path, typer.Option("--library", "-l", help="Experience library file (created if missing).")],
    task: TaskOpt = None,
    model: ModelOpt = "local",
    critic_model: CriticModelOpt = None,
    distiller_model: DistillerModelOpt = None,
    updater_model: UpdaterModelOpt = None,
    prompt_kind: KindOpt = None,
    rollouts: Annotated[
        int | None, typer.Option(min=1, help="Rollouts per problem. Default: 3, as in the paper.")
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(min=1, help="Actor/critic rounds per rollout. Default: 5 as in the paper; 2 for local models."),
    ] = None,
    all_rollouts: Annotated[bool, typer.Option(help="Run every rollout even after a success.")] = False,
    explore_shots: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worked training examples in the actor's prompt while exploring. Default: 3 for base models, "
            "0 otherwise.",
        ),
    ] = None,
    concurrency: ConcurrencyOpt = 4,
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
    explore_with_library: Annotated[
        bool,
        typer.Option(
            "--explore-with-library",
            help="Show each problem's actor what the library holds so far (as flex mode does), and count its "
            "verdicts as helped/hurt for those entries. Default: explore without the library.",
        ),
    ] = False,
    blind_critic: Annotated[
        bool,
        typer.Option(
            "--blind-critic",
            help="The critic sees only the verdict, never the reference answer. Default: it sees the reference, "
            "and any form of the answer in its feedback is masked.",
        ),
    ] = False,
    tools: ToolsOpt = None,
    retriever: RetrieverOpt = DEFAULT_RETRIEVER,
    temperature: TempOpt = None,
    max_tokens: MaxTokensOpt = None,
    timeout: TimeoutOpt = 120.0,
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
    tool_names = parse_tools(tools)
    the_task = resolve_task(task, library)
    problems = load_limited(the_task, train, limit)
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
        concurrency=concurrency,
        timeout=timeout,
        meter=meter,
    )
    check_retriever(retriever)
    # Every option is checked above, before the library is opened: a refused command leaves no file behind. The
    # library, and the run to resume, are checked before a model is called; a run is resumed from a library that
    # exists, never from one this command would create.
    with Library.open(library, create=not resume) as lib:
        lib.check_writable()
        if resume:
            run = lib.resumable_run("learn", task=the_task.name, problem_ids=[p.id for p in problems], run_id=run)
    defaults = exploration_defaults(agents.actor)
    config = LearnConfig(
        explore=ExploreConfig(
            rollouts=rollouts or defaults.rollouts,
            rounds=rounds or defaults.rounds,
            stop_on_success=not all_rollouts,
            shots=defaults.shots if explore_shots is None else explore_shots,
            blind_critic=blind_critic,
            tools=tool_names,
            actor=GenerationOptions(temperature=temperature, max_tokens=max_tokens),
        ),
        concurrency=concurrency,
        retriever=retriever,
        explore_with_library=explore_with_library,
    )
    with Library.open(library) as lib, progress_bar("learn", len(problems)) as bar:
        status = LiveStatus(bar, bar.task_ids[0], meter)

        def on_progress(p: Progress) -> None:
            status.set(
                f"solved {p.solved}/{max(p.done, 1)}  failed {p.failed}  library {lib.count()}", completed=p.done
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
                resume=(run or True) if resume else False,
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
    modes: Annotated[str, typer.Option(help="Comma-separated: vanilla, icl, agent, flex.")] = "vanilla,icl,agent,flex",
    library: Annotated[
        Path | None, typer.Option("--library", "-l", help="Experience library (for flex mode). Default: none.")
    ] = None,
    train: Annotated[
        Path | None, typer.Option("--train", help="Training JSONL, for icl mode's examples. Default: none.")
    ] = None,
    model: ModelOpt = "local",
    critic_model: CriticModelOpt = None,
    prompt_kind: KindOpt = None,
    icl_k: Annotated[int, typer.Option(min=1, help="Worked examples in icl mode.")] = 3,
    agent_rounds: Annotated[int, typer.Option(min=1, help="Actor/critic rounds in agent mode.")] = 3,
    budget: Annotated[
        int, typer.Option(min=50, help="Token budget for retrieved experience in flex mode.")
    ] = DEFAULT_LIMITS.retrieval_budget_tokens,
    concurrency: ConcurrencyOpt = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N test problems. Default: all.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the choice of ICL examples and the bootstrap.")] = 0,
    repeats: Annotated[
        int, typer.Option(min=1, help="Samples per problem: pass@1 averaged over them (set --temperature > 0).")
    ] = 1,
    temperature: TempOpt = None,
    max_tokens: MaxTokensOpt = None,
    tools: ToolsOpt = None,
    retriever: RetrieverOpt = DEFAULT_RETRIEVER,
    guide_at: GuideAtOpt = None,
    timeout: TimeoutOpt = 120.0,
    snapshot: SnapshotOpt = False,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write results and every per-item record here. Default: nowhere.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Evaluate in the paper's modes and print the table."""
    mode_list = parse_modes(modes)
    tool_names = parse_tools(tools)
    check_out_dir(out_dir)
    the_task = resolve_task(task, library)
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
        tools=tool_names,
        retriever=retriever,
        guide_at=guide_at,
        actor=GenerationOptions(temperature=temperature, max_tokens=max_tokens),
    )
    lib = open_library_for_reading(library)
    started = time.time()
    try:
        # Everything that can be wrong with the arguments fails here, before a model is loaded or called.
        check_modes(mode_list, library=lib, train=train_problems)
        if lib is not None:
            get_retriever(retriever, lib)
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
        # Where flex mode used its experience (None without flex mode), and whether a critic judged attempts.
        guide = (guide_at or guide_at_default(agents.actor)) if Mode.FLEX in mode_list else None
        judged = Mode.AGENT in mode_list or guide == "review"
        meta = {
            "task": the_task.name,
            "test": str(test),
            "train": str(train) if train else None,
            "library": str(library) if library else None,
            "model": agents.actor.name,
            # The critic plays only the blind judge of agent mode, and of flex mode at review.
            "models": agents.models("actor", "critic") if judged else agents.models("actor"),
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
                "tools": list(tool_names),
                "guide_at": guide,
            },
            "calls": meter.snapshot(),
        }
        if out_dir is not None:
            write_run(out_dir, meta, results, lib, snapshot=snapshot)
    finally:
        if lib is not None:
            lib.close()
    if as_json:
        out.print_json(data={**meta, "results": [r.summary() for r in results]})
        return
    out.print(results_table(results, f"{the_task.name} on {test.name} with {agents.actor.name}"))
    if failed := sum(r.errors for r in results):
        err.print(f"[yellow]{failed} items failed at the model and count as wrong (the errors column)[/]")
    if out_dir is not None:
        out.print(f"results and per-item records: {out_dir}  (flex report {out_dir} makes an HTML page)")


@app.command(
    "solve",
    cls=Command,
    epilog=examples(
        'flex solve --library gsm8k.flexlib "A train leaves at 3pm ..."',
        'flex solve --library gsm8k.flexlib --show-guidance "What is 17% of 240?"',
    ),
)
@handle_errors
def solve_cmd(
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="The problem to solve.")],
    library: Annotated[
        Path | None,
        typer.Option("--library", "-l", help="Experience library to draw guidance from. Default: none (a notice)."),
    ] = None,
    task: TaskOpt = None,
    model: ModelOpt = "local",
    prompt_kind: KindOpt = None,
    budget: Annotated[
        int, typer.Option(min=50, help="Token budget for retrieved experience.")
    ] = DEFAULT_LIMITS.retrieval_budget_tokens,
    show_guidance: Annotated[bool, typer.Option(help="Print the retrieved experiences.")] = False,
    temperature: TempOpt = None,
    max_tokens: MaxTokensOpt = None,
    tools: ToolsOpt = None,
    retriever: RetrieverOpt = DEFAULT_RETRIEVER,
    guide_at: GuideAtOpt = None,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Solve one question with guidance retrieved from the library, as flex mode answers an evaluation item."""
    tool_names = parse_tools(tools)
    the_task = resolve_task(task, library)
    if library is None:
        err.print(
            "[yellow]no --library[/yellow]: answering without guidance from experience "
            "(flex learn builds a library; flex demo leaves one in its run folder)",
            highlight=False,
        )
    meter = Meter()
    check_question_length(question)
    lib = open_library_for_reading(library)
    try:
        if lib is not None and not lib.read_only:
            lib.check_writable()  # the retrieval counters are written after the answer: fail before the call
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
                tools=tool_names,
                retriever=retriever,
                guide_at=guide_at,
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
                "tool_calls": solution.tool_calls,
                "steps": [s.model_dump() for s in solution.steps],
            }
        )
        return
    if show_guidance:
        for e in solution.guidance:
            out.print(experience_line(e))
        out.print()
    for i, step in enumerate(solution.steps, 1):
        out.print(f"[bold]step {i} ({step.kind})[/bold]", highlight=False)
        out.print(f"{step.input}\n[output]\n{step.observation}\n", highlight=False, markup=False)
    out.print(solution.reply.strip(), highlight=False, markup=False)
    out.print(f"\n[bold]answer:[/bold] {solution.answer}", highlight=False)


# After the core commands, so `flex --help` lists them in the order of a workflow.
experiments_cmd.register(app)
demo_cmd.register(app)
serve_cmd.register(app)
mcp_cmd.register(app)
