"""Writing a file so that a reader never sees half of it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path`, creating its folder: written beside it under a fresh name and renamed, so
    the file is either the old one or the whole new one, and a failure leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of our own, so that two writers of one file do not share a temporary file; open(..., "x") rather
    # than mkstemp so the file gets the usual umask permissions, not mkstemp's 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
