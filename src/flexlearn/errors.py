"""One error hierarchy for flexlearn. Messages are written for the user who has to act on them."""

from __future__ import annotations


class FlexError(Exception):
    """Base of every error flexlearn raises on purpose. The CLI prints these without a traceback."""


class ConfigError(FlexError):
    """A bad model URI, option value or missing dependency."""


class InputError(FlexError):
    """A bad input file: names the file and, where it applies, the line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class LibraryError(FlexError):
    """The experience library file is unreadable, of an unknown schema, or asked for something it lacks."""


class ModelError(FlexError):
    """A model call failed for good (after retries, or with an error that retrying cannot fix)."""


class TransientModelError(ModelError):
    """A model call failed in a way that may pass: 429, 5xx, timeout, dropped connection."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
