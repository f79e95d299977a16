"""How much text each agent may put into a prompt or a reply, in one place.

Prompts carry model-written text (attempts, feedback, lessons) whose length nothing else bounds: without these
limits one rambling attempt could push a critic or distiller prompt past a small model's context, and the library
would fill with entries too long to retrieve. Lengths are in characters unless a name says tokens; text is cut with
`agents.templates.shorten`, which keeps the head and the tail (where an attempt's final answer is).

The agents take a `limits` keyword defaulting to `DEFAULT_LIMITS`. The reply bounds (`*_reply_*` fields) are the
exception: they are `max_length` constraints of the agents' pydantic reply schemas, which are classes, so they are
read from `DEFAULT_LIMITS` when the agent modules are imported and a `limits` argument does not change them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Prompt-size and reply-size bounds for the agents and retrieval. See `docs/limits.md` for the table."""

    # -- retrieval ------------------------------------------------------------------------------------------------

    # Experience the actor sees for one problem, in `Experience.approx_tokens` (4 characters a token). About a
    # dozen short lessons or three or four worked cases with their lessons: enough to cover every zone and level, small
    # enough to leave room for the question and the reply in a 4,096-token context.
    retrieval_budget_tokens: int = 1500

    # -- actor ----------------------------------------------------------------------------------------------------

    # A retrieved lesson's example, in a chat prompt: one example illustrates a lesson; a whole worked solution
    # would crowd the other lessons out of the budget's worth of context.
    actor_example_chars: int = 300
    # A golden case's worked solution in a chat prompt: whole (a solution cut off halfway teaches nothing and reads
    # as an unfinished attempt), up to about 400 tokens; the budget decides how many cases fit.
    actor_case_solution_chars: int = 1600
    # A warning case in a chat prompt: the problem, the wrong answer and why, enough to recognise the trap.
    actor_warning_case_chars: int = 500
    # A non-case lesson shown to a base model as a one-line note: base models follow worked examples, not prose,
    # so notes stay short and the worked cases get the room.
    actor_note_chars: int = 240
    # An earlier wrong attempt shown with its feedback on a retry (chat): enough to recognise the approach and
    # its final answer (the tail is kept) for up to one attempt per round.
    actor_retry_attempt_chars: int = 600
    # The same for a base model, which sees only its last attempt in one parenthetical line with the hint.
    actor_retry_attempt_short_chars: int = 80
    actor_retry_hint_chars: int = 160

    # -- critic ---------------------------------------------------------------------------------------------------

    # The attempt the critic reads: a full step-by-step solution fits, so the critic can point at the wrong step.
    critic_attempt_chars: int = 3000
    # The attempt in a base model's one-line completion prompt, where the final answer is what matters.
    critic_attempt_short_chars: int = 120
    # Reply bounds: feedback the actor can take in at a glance on its next round; a local model's grammar is
    # tightened further (see docs/local-model-measurements.md).
    critic_reply_diagnosis_chars: int = 400
    critic_reply_next_step_chars: int = 300

    # -- distiller ------------------------------------------------------------------------------------------------

    # The problem statement; like the critic's attempt, long enough for any benchmark question we ship.
    distiller_question_chars: int = 3000
    # Each attempt in the trajectory record. A trajectory holds up to rollouts x rounds attempts (15 with the
    # paper's 3 x 5), so each gets less than the critic's single attempt.
    distiller_attempt_chars: int = 1200
    # Each attempt in a base model's one-line summary of the trajectory ("answer (right); ...").
    distiller_attempt_short_chars: int = 40
    # A case's worked example, stored in the library and later shown as a worked example: a chat model's
    # step-by-step solution to a word problem (about 1,000-1,500 characters) kept whole, since one cut in the middle
    # reads as an unfinished attempt; the retrieval budget decides how many cases a prompt shows.
    distiller_example_question_chars: int = 800
    distiller_example_answer_chars: int = 1600
    # A warning case's wrong answer and the critic's diagnosis of it, in its example and its fallback summary.
    distiller_wrong_answer_chars: int = 200
    distiller_feedback_chars: int = 200
    # The factual summary a case gets when the model wrote none: a reminder of the problem, not a copy of it.
    distiller_summary_question_chars: int = 300
    distiller_summary_answer_chars: int = 120
    # Reply bounds: a lesson is a title and a few sentences; longer ones cost retrieval budget and rarely say more.
    distiller_reply_title_chars: int = 80
    distiller_reply_content_chars: int = 500
    # The deciding step quoted, a warning's "instead", a pattern's example: short evidence, not a second lesson.
    distiller_reply_quote_chars: int = 240
    # Lessons in one distiller reply, and kept per zone and level: a trajectory rarely supports more.
    distiller_max_lessons: int = 8
    distiller_lessons_per_level: int = 2

    # -- updater --------------------------------------------------------------------------------------------------

    # Each nearest entry the candidate is compared with (chat): a whole lesson fits (the distiller's bound is 500),
    # so a merge sees what it merges.
    updater_neighbour_chars: int = 600
    # The same in a base model's completion prompt, where all neighbours share one short context.
    updater_neighbour_short_chars: int = 160
    # Reply bounds: a merged lesson may run a little longer than either of the two it joins; a reason is a line in
    # the event log.
    updater_reply_merged_chars: int = 700
    updater_reply_reason_chars: int = 200


DEFAULT_LIMITS = Limits()
