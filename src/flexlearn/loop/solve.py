"""Answering one question as flex mode answers an evaluation item: retrieve, place the guidance (the actor's
prompt, or the review loop), act (with tools when asked), and count what the entries shown did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flexlearn.agents.tools import make_toolset
from flexlearn.experience import Experience
from flexlearn.library.store import Library
from flexlearn.limits import DEFAULT_LIMITS
from flexlearn.loop.agents import Agents
from flexlearn.loop.episode import place, resolve_guide_at, resolve_rounds, run_episode
from flexlearn.loop.evaluate import check_tool_model
from flexlearn.models.base import GenerationOptions, Usage
from flexlearn.records import ToolStepRecord
from flexlearn.retrieval import DEFAULT_RETRIEVER, get_retriever, select_guidance
from flexlearn.retrieval.guidance import case_gate
from flexlearn.tasks.base import Problem, Task
from flexlearn.tasks.loader import check_question_length


@dataclass
class Solution:
    reply: str
    answer: str | None
    guidance: list[Experience]
    usage: Usage
    # The tool runs that led to the reply (with `tools`), and the experience ids the experience tool showed.
    steps: list[ToolStepRecord] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)
    correct: bool | None = None  # scored when the answer was known

    @property
    def tool_calls(self) -> int:
        return len(self.steps)


async def solve(
    question: str,
    *,
    task: Task,
    agents: Agents,
    library: Library | None,
    budget_tokens: int = DEFAULT_LIMITS.retrieval_budget_tokens,
    options: GenerationOptions | None = None,
    retriever: str = DEFAULT_RETRIEVER,
    tools: Sequence[str] = (),
    answer: str | None = None,
    category: str = "",
    guide_at: str | None = None,
    review_rounds: int | None = None,
) -> Solution:
    """Answer one question with guidance retrieved from the library by the retriever named `retriever`, and with
    `tools` ("python", "experience") when given, as flex mode answers an evaluation item: `guide_at` places the
    guidance as there ("prompt", or "review" with up to `review_rounds` attempts; None for either: by the
    actor). With a known `answer` the reply is scored, and the entries shown are counted as having helped or
    hurt. `category` names the kind of problem, as a data file's "category" field does: the library's worked cases
    of that kind are preferred (see `select_guidance`)."""
    check_question_length(question)
    review = resolve_guide_at(guide_at, agents.actor) == "review" and library is not None
    problem = Problem(id="question", question=question, answer=answer or "", meta={"category": category})
    guidance: list[Experience] = []
    search = get_retriever(retriever, library) if library is not None else None
    toolset = make_toolset(tools, shown=library.shown() if library is not None else None, retriever=search)
    if toolset is not None:
        check_tool_model(agents.actor)
    if library is not None and search is not None:
        guidance = select_guidance(
            search,
            library,
            question,
            budget_tokens=budget_tokens,
            case_min_shared=case_gate(agents.actor.prompt_kind),
            category=category,
        )
    episode = await run_episode(
        task,
        problem,
        agents=agents,
        placement=place(guidance, review=review, category=category),
        rounds=resolve_rounds(review_rounds, agents.actor),
        review=review,
        tools=toolset,
        actor=options,
    )
    shown = list(dict.fromkeys([e.id for e in guidance] + episode.searched))
    correct = task.score(episode.reply, problem).correct if answer is not None else None
    if library is not None and shown and not library.read_only:
        with library.transaction():
            library.record_retrieval(shown)
            if correct is not None:
                library.record_outcome(shown, helped=correct)
    solution = Solution(
        episode.reply, task.extract_answer(episode.reply), guidance, episode.usage, episode.steps, episode.searched
    )
    solution.correct = correct
    return solution
