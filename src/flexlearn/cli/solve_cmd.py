"""`flex solve`: one question answered with guidance from the library, as flex mode answers an evaluation item."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from flexlearn.cli.common import (
    Command,
    GuideAtOpt,
    KindOpt,
    MaxTokensOpt,
    ModelOpt,
    RetrieverOpt,
    TaskOpt,
    TempOpt,
    TimeoutOpt,
    ToolsOpt,
    build_agents,
    examples,
    handle_errors,
    library_option,
    open_library_for_reading,
    resolve_task,
    run_closing,
    setting,
)
from flexlearn.cli.output import err, experience_line, out
from flexlearn.engine import Engine
from flexlearn.models.middleware import Meter
from flexlearn.settings import SOLVE, SolveSettings
from flexlearn.tasks.loader import check_question_length


def register(app: typer.Typer) -> None:
    app.command(
        "solve",
        cls=Command,
        epilog=examples(
            'flex solve --library gsm8k.flexlib "A train leaves at 3pm ..."',
            'flex solve --library gsm8k.flexlib --show-guidance "What is 17% of 240?"',
        ),
    )(solve_cmd)


@handle_errors
def solve_cmd(
    question: Annotated[str, typer.Argument(metavar="QUESTION", help="The problem to solve.")],
    library: Annotated[
        str | None,
        library_option(
            "Experience library to draw guidance from: a file or a postgresql://... URL. Default: none (a notice)."
        ),
    ] = None,
    task: TaskOpt = None,
    model: ModelOpt = "local",
    prompt_kind: KindOpt = None,
    category: Annotated[
        str,
        typer.Option(
            "--category",
            help="The question's kind (as a data file's \"category\" field names it): the library's worked cases of "
            "that kind are preferred. Default: none.",
            show_default=False,
        ),
    ] = "",
    answer: Annotated[
        str | None,
        typer.Option(
            "--answer",
            help="The known answer: the reply is scored, and the entries shown count as having helped or hurt. "
            "Default: none, not scored.",
            show_default=False,
        ),
    ] = None,
    budget_tokens: Annotated[int, setting(SolveSettings, "budget_tokens", "--budget")] = SOLVE.budget_tokens,
    review_rounds: Annotated[int | None, setting(SolveSettings, "review_rounds")] = SOLVE.review_rounds,
    show_guidance: Annotated[bool, typer.Option(help="Print the retrieved experiences.")] = False,
    temperature: TempOpt = SOLVE.temperature,
    max_tokens: MaxTokensOpt = SOLVE.max_tokens,
    tools: ToolsOpt = None,
    retriever: RetrieverOpt = SOLVE.retriever,
    guide_at: GuideAtOpt = SOLVE.guide_at,
    timeout: TimeoutOpt = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Solve one question with guidance retrieved from the library, as flex mode answers an evaluation item."""
    settings = SolveSettings.pick(locals())
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
            Engine.of(the_task, agents, lib, solving=settings).solve(question, answer=answer, category=category),
        )
    finally:
        if lib is not None:
            lib.close()
    if as_json:
        out.print_json(
            data={
                "answer": solution.answer,
                "correct": solution.correct,
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
    verdict = "" if solution.correct is None else (" (correct)" if solution.correct else f" (wrong; expected {answer})")
    out.print(f"\n[bold]answer:[/bold] {escape(f'{solution.answer}{verdict}')}", highlight=False)
