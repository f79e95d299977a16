"""Model calls by role: what each role (actor, critic...) spent, collapsed under the results table."""

from __future__ import annotations

from dataclasses import dataclass

from flexlearn.records import Results
from flexlearn.report.format import integer, per


@dataclass(frozen=True)
class CallsRow:
    """One role's calls, failures, retries, tokens and latency, as text."""

    role: str
    calls: str
    failures: str
    failed: bool
    retries: str
    prompt_tokens: str
    completion_tokens: str
    latency: str
    rate: str


def calls(results: Results) -> list[CallsRow]:
    """One row per role (the results template collapses them under the table); empty when not recorded."""
    return [
        CallsRow(
            role=role,
            calls=integer(c.calls),
            failures=integer(c.failures),
            failed=bool(c.failures),
            retries=integer(c.retries),
            prompt_tokens=integer(c.prompt_tokens),
            completion_tokens=integer(c.completion_tokens),
            latency=per(c.latency_s, c.calls, 2),
            rate=f"{c.completion_tokens / c.latency_s:,.1f}" if c.latency_s > 0 else "—",
        )
        for role, c in results.calls.items()
    ]
