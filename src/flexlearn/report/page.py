"""The page: the sections in order, the navigation, the inline CSS and script, and the Content Security Policy
that lets nothing else load or run. The markup is in `templates/page.html.j2` and the templates it includes."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib import resources
from pathlib import Path

from markupsafe import Markup

from flexlearn import __version__
from flexlearn.atomic import write_atomic
from flexlearn.report.load import load_run
from flexlearn.report.sections.drilldown import MAX_PROBLEMS, drilldown
from flexlearn.report.sections.header import header
from flexlearn.report.sections.inherit import inherit
from flexlearn.report.sections.library import Experiences, library
from flexlearn.report.sections.results import results
from flexlearn.report.sections.scaling import scaling
from flexlearn.report.sections.versions import versions
from flexlearn.report.templating import render

REPORT = "report.html"


@cache
def static(name: str) -> str:
    """A file from `report/static/`, shipped as package data."""
    return resources.files("flexlearn.report").joinpath("static", name).read_text(encoding="utf-8")


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def render_report(run_dir: Path, *, max_problems: int = MAX_PROBLEMS) -> str:
    """The report page for a run directory, as one self-contained HTML string.

    Raises InputError when the directory holds nothing to report or a file in it is malformed."""
    run = load_run(Path(run_dir))
    shown = Experiences()
    # The library section is built before the drill-down: it decides which experiences get anchors.
    any_retrieved = any(item.retrieved for item in run.items)
    library_part = library(run, shown) if run.library is not None or any_retrieved else None
    modes = [m.mode for m in run.results.results] if run.results is not None else []
    modes += [m for m in dict.fromkeys(i.mode for i in run.items) if m not in modes]
    parts = {
        "results": results(run.results, run.items) if run.results is not None else None,
        "scaling": scaling(run.scaling) if run.scaling is not None else None,
        "inherit": inherit(run.inherit) if run.inherit is not None else None,
        "library": library_part,
        "versions": versions(run.versions) if run.versions is not None and run.versions.total else None,
        "items": drilldown(run.items, modes, shown, max_problems),
    }
    titles = {
        "results": "Results",
        "scaling": "Scaling law",
        "inherit": "Inheritance",
        "library": "Library",
        "versions": "Versions",
        "items": "Per-item results",
    }
    script = static("report.js")
    return render(
        "page.html.j2",
        title=" · ".join(t for t in (run.dataset(), *run.task_and_model()) if t),
        header=header(run),
        sections=[(key, titles[key]) for key, part in parts.items() if part is not None],
        **parts,
        version=__version__,
        directory=str(run.directory),
        # Our own files, inserted as they are; the policy allows exactly this script by its hash.
        css=Markup(static("report.css")),
        script=Markup(script),
        script_hash=script_hash(script),
    )


def write_report(run_dir: Path, out: Path | None = None, *, max_problems: int = MAX_PROBLEMS) -> Path:
    """Render the report for `run_dir` and write it atomically to `out` (default: run_dir/report.html; a
    directory gets report.html inside it). Returns the path written."""
    run_dir = Path(run_dir)
    page = render_report(run_dir, max_problems=max_problems)
    target = run_dir / REPORT if out is None else Path(out)
    if target.is_dir():
        target = target / REPORT
    write_atomic(target, page)
    return target
