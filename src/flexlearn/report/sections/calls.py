"""Model calls by role: what each role (actor, critic...) spent, collapsed under the results table."""

from __future__ import annotations

from flexlearn.records import Results
from flexlearn.report.format import integer, per, table
from flexlearn.report.svg import esc


def calls(results: Results) -> str:
    """A collapsed table of calls, failures, retries, tokens and latency per role; nothing when not recorded."""
    if not results.calls:
        return ""
    rows = []
    for role, c in results.calls.items():
        rate = f"{c.completion_tokens / c.latency_s:,.1f}" if c.latency_s > 0 else "—"
        rows.append(
            [
                esc(role),
                integer(c.calls),
                f'<span class="{"bad" if c.failures else ""}">{integer(c.failures)}</span>',
                integer(c.retries),
                integer(c.prompt_tokens),
                integer(c.completion_tokens),
                per(c.latency_s, c.calls, 2),
                rate,
            ]
        )
    headers = ["Role", "Calls", "Failures", "Retries", "Prompt tokens", "Completion tokens", "Latency/call (s)"]
    return f"<details><summary>Model calls by role</summary>{table([*headers, 'Out tok/s'], rows)}</details>"
