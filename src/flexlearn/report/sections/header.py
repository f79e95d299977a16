"""The page header (task, model, date, files, configuration) and the section navigation."""

from __future__ import annotations

from collections.abc import Sequence

from flexlearn.report.format import date, duration, flatten, path_html, plain
from flexlearn.report.load import Run
from flexlearn.report.svg import esc


def header(run: Run) -> str:
    """The header: what was run, with which model, when, on which files, and the run's configuration."""
    r, s = run.results, run.scaling
    named_task, named_model = run.task_and_model()
    task, model = named_task or "unknown task", named_model or "unknown model"
    dataset = run.dataset()
    facts: list[tuple[str, str]] = [*([("Data set", dataset)] if dataset else []), ("Task", task), ("Model", model)]
    if r is not None:
        facts += [
            ("Date", date(r.started)),
            ("Duration", duration(r.seconds)),
            ("Test file", r.test or "—"),
            ("Train file", r.train or "—"),
            ("Library", r.library or "—"),
        ]
    elif s is not None:
        facts.append(("Library", s.library or "—"))
    facts.append(("Run directory", str(run.directory)))
    dl = "".join(
        f"<div><dt>{esc(k)}</dt><dd>{path_html(v) if k in PATH_FACTS else esc(v)}</dd></div>" for k, v in facts
    )
    config = ""
    if r is not None and r.config:
        cells = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(plain(v))}</dd></div>" for k, v in flatten(r.config))
        config = f'<h2 class="small">Configuration</h2><dl class="facts config">{cells}</dl>'
    return (
        f'<header><p class="kicker">FLEX report</p><h1>{esc(dataset or task)} <span class="muted">·</span> '
        f"{esc(model)}</h1>"
        f'<dl class="facts">{dl}</dl>{config}</header>'
    )


PATH_FACTS = {"Test file", "Train file", "Library", "Run directory"}


def nav(sections: Sequence[tuple[str, str]]) -> str:
    """Links to the page's sections, given as (id, title)."""
    links = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in sections)
    return f'<nav aria-label="Sections">{links}</nav>'
