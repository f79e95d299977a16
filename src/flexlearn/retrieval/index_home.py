"""Where the search index of a library on a server lives: a file's index is kept beside it
(`tantivy_index.index_dir`), but a server has no folder beside it, so each host keeps its own copy of a server
library's index in a per-user cache folder, derived like every index, caught up from the library's event log.

The folder is `<root>/<digest>`: the root is `$FLEX_INDEX_DIR`, else `index/` in flexlearn's cache folder
(`$FLEX_CACHE_DIR`, else `$XDG_CACHE_HOME/flexlearn`, else `~/.cache/flexlearn`, as the embedded models'), and the
digest is a sha256 of the library's identity (`reader.LibraryReader.identity`: the server's system identifier, or
its address and port, the database and the schema). A password is never part of it. Processes on one host that use
one library share the folder as they share a file's, through tantivy's writer lock; a library dropped and made again
under the same name gets the same folder and rebuilds it, as the event at the noted revision is not the one noted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Hex digits of the digest in a folder's name: 128 bits.
_DIGEST_CHARS = 32


def index_root() -> Path:
    """The folder that holds this user's indexes of libraries on servers."""
    explicit = os.environ.get("FLEX_INDEX_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("FLEX_CACHE_DIR", "").strip()
    if cache:
        return Path(cache).expanduser() / "index"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "flexlearn" / "index"


def server_index_dir(identity: str) -> Path:
    """The folder of the index of the library on a server whose identity is `identity`."""
    digest = hashlib.sha256(f"flexlearn.index:{identity}".encode()).hexdigest()[:_DIGEST_CHARS]
    return index_root() / digest
