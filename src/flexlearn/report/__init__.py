"""The run report: one self-contained HTML page built from a run directory, without calling any model.

Reads what `flex eval --out DIR` and friends wrote (`results.json`, `items.jsonl`, and optionally
`library.ref.json` or, with --snapshot, `library.json`, `scaling.json`, `inherit.json`, all `flexlearn.records`)
and renders a page that needs nothing from the network: inline CSS, inline SVG charts, <details> for
drill-down, and one tiny inline script (allowed by hash in the page's Content Security Policy) that opens
collapsed sections when a link points into them. Every piece of user or model
text is HTML-escaped by Jinja2's autoescape: model replies routinely contain `<`, LaTeX and SMILES.

    write_report(Path("runs/aime")) -> Path("runs/aime/report.html")

Modules: `load` (a run directory into records), `format` (formatters), `sections/` (what each part of the page
shows, as plain records), `svg` (charts), `templating` (the Jinja2 environment), `page` (assembly and the
security policy). The markup is in `templates/*.html.j2`, the CSS and script in `static/`, both package data.
"""

from flexlearn.report.load import Run, load_run
from flexlearn.report.page import render_report, write_report

__all__ = ["Run", "load_run", "render_report", "write_report"]
