"""The page header (task, model, date, files, configuration); the page template adds the section navigation."""

from __future__ import annotations

from dataclasses import dataclass

from flexlearn.report.format import date, duration, flatten, plain
from flexlearn.report.load import Run

PATH_FACTS = {"Test file", "Train file", "Library", "Run directory"}


@dataclass(frozen=True)
class Fact:
    """One labelled value of the header; paths may break after a separator."""

    label: str
    value: str

    @property
    def is_path(self) -> bool:
        return self.label in PATH_FACTS


@dataclass(frozen=True)
class Header:
    """What `header.html.j2` shows."""

    heading: str
    model: str
    facts: list[Fact]
    config: list[tuple[str, str]]


def header(run: Run) -> Header:
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
    config = [(k, plain(v)) for k, v in flatten(r.config)] if r is not None else []
    return Header(dataset or task, model, [Fact(k, v) for k, v in facts], config)
