"""The Jinja2 environment that renders the report's templates (`report/templates/*.html.j2`, shipped as package
data).

Autoescape is on for every template, so each value a template interpolates is HTML-escaped by the engine. The
only values that pass unescaped are `Markup` made by our own code: the inline SVG charts (`svg`, drawn from
numbers, their labels escaped by markupsafe as they are built) and the page's own CSS and script (`static/`).
Sections hand the templates plain strings and records, never markup. StrictUndefined turns a misspelt name in a
template into an error instead of an empty string.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from flexlearn.records import ITEMS, LIBRARY, LIBRARY_REF
from flexlearn.report import svg
from flexlearn.report.format import integer, one_line, path_parts


@cache
def environment() -> Environment:
    """The report's template environment (built once)."""
    env = Environment(
        loader=PackageLoader("flexlearn.report", "templates"),
        # Every template is HTML; a template given as a string (none is) would be escaped too.
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
        undefined=StrictUndefined,
        # Block tags on their own lines leave no blank lines or indentation behind.
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(integer=integer, number=svg.number, path_parts=path_parts)
    env.globals.update(one_line=one_line, ITEMS=ITEMS, LIBRARY=LIBRARY, LIBRARY_REF=LIBRARY_REF)
    return env


def render(template: str, **context: Any) -> str:
    """Render one of the report's templates."""
    return environment().get_template(template).render(**context)
