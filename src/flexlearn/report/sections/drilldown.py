"""The per-item drill-down: one collapsible row per problem, marks per mode, and each mode's attempt inside."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from flexlearn.records import ITEMS, ItemRecord
from flexlearn.report import svg
from flexlearn.report.format import anchor, clip, integer, one_line, pre, table
from flexlearn.report.sections.library import Experiences
from flexlearn.report.svg import esc

# Caps that keep a large run's page light enough for a browser; the full text stays in items.jsonl.
MAX_PROBLEMS = 500
QUESTION_CHARS = 2000
PROMPT_CHARS = 2000
REPLY_CHARS = 3000
STEP_CHARS = 1500


@dataclass
class Problem:
    """One problem's attempts, by mode, in repeat order."""

    problem_id: str
    question: str
    reference: str
    by_mode: dict[str, list[ItemRecord]] = field(default_factory=dict)

    def disagree(self) -> bool:
        """Whether the modes scored this problem differently (with repeats: a different share of correct
        attempts; a mode that is wrong on one repeat and right on another does not disagree with itself)."""
        return len({sum(a.correct for a in atts) / len(atts) for atts in self.by_mode.values() if atts}) > 1


def group(items: Sequence[ItemRecord]) -> list[Problem]:
    """The items by problem, in the order problems first appear."""
    problems: dict[str, Problem] = {}
    for item in items:
        p = problems.get(item.problem_id)
        if p is None:
            p = problems[item.problem_id] = Problem(item.problem_id, item.question, item.reference)
        p.by_mode.setdefault(item.mode, []).append(item)
    for p in problems.values():
        for attempts in p.by_mode.values():
            attempts.sort(key=lambda i: i.repeat)
    return list(problems.values())


def drilldown(items: Sequence[ItemRecord], modes: Sequence[str], shown: Experiences, max_problems: int) -> str:
    """The section, listing at most `max_problems` problems; empty when there are no items."""
    problems = group(items)
    if not problems:
        return ""
    listed = problems[:max_problems]
    differ = sum(p.disagree() for p in problems)
    columns = f"grid-template-columns: 1.2rem minmax(6rem, 11rem) minmax(0, 1fr) repeat({len(modes)}, 4.2rem)"
    header = (
        f'<div class="prow phead" style="{columns}" aria-hidden="true"><span></span><span>Problem</span>'
        "<span>Question</span>" + "".join(f"<span>{esc(m)}</span>" for m in modes) + "</div>"
    )
    rows = [_problem_row(p, modes, shown, columns) for p in listed]
    intro = f"{len(problems):,} problems; the modes disagree on {differ:,}. Click a row for each mode's reply."
    cap = (
        f'<p class="note warn">Showing the first {len(listed):,} of {len(problems):,} problems; every item is in '
        f"{ITEMS}.</p>"
        if len(problems) > len(listed)
        else ""
    )
    return (
        f'<section id="items"><h2>Per-item results</h2><p class="note">{esc(intro)} Rows where the modes disagree '
        f'are marked on the left.</p>{cap}<div class="problems">{header}{"".join(rows)}</div></section>'
    )


def _mark(attempts: Sequence[ItemRecord] | None) -> str:
    if not attempts:
        return '<span class="muted" title="not evaluated">–</span>'
    if len(attempts) == 1:
        a = attempts[0]
        if a.error:
            return '<span class="bad" title="error">⚠</span>'
        return '<span class="ok" title="correct">✓</span>' if a.correct else '<span class="bad" title="wrong">✗</span>'
    right = sum(a.correct for a in attempts)
    cls = "ok" if right == len(attempts) else "bad" if right == 0 else "mixed"
    return f'<span class="{cls}" title="{right} of {len(attempts)} repeats correct">{right}/{len(attempts)}</span>'


def _retrieved_links(ids: Sequence[str], shown: Experiences) -> str:
    if not ids:
        return '<span class="muted">—</span>'
    return " ".join(shown.link(eid) for eid in ids)


def _problem_row(p: Problem, modes: Sequence[str], shown: Experiences, columns: str) -> str:
    marks = "".join(f'<span class="mark">{_mark(p.by_mode.get(m))}</span>' for m in modes)
    summary = (
        f'<summary class="prow" style="{columns}"><span class="caret" aria-hidden="true">▸</span>'
        f'<span class="pid">{esc(p.problem_id)}</span><span class="q">{esc(one_line(p.question))}</span>{marks}'
        "</summary>"
    )
    compare_rows = []
    blocks = []
    for mode in [*modes, *(m for m in p.by_mode if m not in modes)]:
        attempts = p.by_mode.get(mode, [])
        for a in attempts:
            # Repeats are numbered from 0 in items.jsonl; people count from 1.
            label = f"{mode} (repeat {a.repeat + 1})" if len(attempts) > 1 else mode
            compare_rows.append(
                [
                    f'<span class="mode">{esc(label)}</span>',
                    _mark([a]),
                    "<code>—</code>" if a.extracted is None else f"<code>{esc(clip(a.extracted, 300)[0])}</code>",
                    "—" if a.score is None else svg.number(a.score),
                    _retrieved_links(a.retrieved, shown),
                    integer(a.calls),
                    integer(a.prompt_tokens + a.completion_tokens),
                    integer(a.rounds),
                ]
            )
            blocks.append(_attempt(a, label))
    compare = table(
        ["Mode", "", "Extracted answer", "Score", "Retrieved experience", "Calls", "Tokens", "Rounds"],
        compare_rows,
        numeric_from=5,
        css="compare",
    )
    body = (
        f'<div class="pbody"><div class="label">Question</div>{pre(p.question, QUESTION_CHARS)}'
        f'<div class="label">Reference answer</div><pre class="ref">{esc(clip(p.reference, 2000)[0])}</pre>'
        f"{compare}{''.join(blocks)}</div>"
    )
    cls = "problem differ" if p.disagree() else "problem"
    return f'<details class="{cls}" id="{anchor("p", p.problem_id)}">{summary}{body}</details>'


def _attempt(a: ItemRecord, label: str) -> str:
    error = f'<p class="bad">Error: {esc(a.error)}</p>' if a.error else ""
    data = ""
    if a.score_data:
        dumped = json.dumps(a.score_data, indent=2, ensure_ascii=False)
        data = f"<details><summary>Score data</summary><pre>{esc(dumped)}</pre></details>"
    return (
        f'<div class="attempt"><h4>{esc(label)} {_mark([a])}</h4>{error}{_tool_steps(a)}'
        f'<div class="label">Reply</div>{pre(a.reply, REPLY_CHARS, "reply")}'
        f"<details><summary>Prompt ({len(a.prompt):,} characters)</summary>{pre(a.prompt, PROMPT_CHARS)}"
        f"</details>{data}</div>"
    )


def _tool_steps(a: ItemRecord) -> str:
    """Each tool run of a tool-using actor, in order: the code it wrote and the output it saw next."""
    if not a.steps:
        return ""
    rounds = len({s.round for s in a.steps}) > 1
    parts = []
    for i, step in enumerate(a.steps, 1):
        where = f", round {step.round + 1}" if rounds else ""
        parts.append(
            f'<div class="label">Step {i}: {esc(step.kind)}{where} ({step.seconds:.1f} s)</div>'
            f"{pre(step.input, STEP_CHARS)}{pre(step.observation, STEP_CHARS)}"
        )
    return f"<details open><summary>Tool steps ({len(a.steps)})</summary>{''.join(parts)}</details>"
