"""The HTML report: one self-contained page from a run directory."""

from flexlearn.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
