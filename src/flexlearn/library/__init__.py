"""The experience library: one SQLite file and its portable formats. Retrieval from it is in
`flexlearn.retrieval`."""

from flexlearn.library.formats import ImportResult, export_json, import_file, to_markdown
from flexlearn.library.store import Library

__all__ = ["ImportResult", "Library", "export_json", "import_file", "to_markdown"]
