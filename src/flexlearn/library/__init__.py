"""The experience library: one SQLite file, its retrieval, and its portable formats."""

from flexlearn.library.formats import ImportResult, export_json, import_file, to_markdown
from flexlearn.library.retrieve import retrieve
from flexlearn.library.store import Library

__all__ = ["ImportResult", "Library", "export_json", "import_file", "retrieve", "to_markdown"]
