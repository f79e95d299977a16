"""Cleaning text before it is stored: what a prompt must never carry invisibly.

Control characters (but tab and newline) are invisible in prompts and NUL breaks some tools. Bidirectional
overrides and isolates can make a lesson read differently on screen than to the model (Trojan Source), and
zero-width characters hide words from a person reviewing the text and from the search index.
"""

from __future__ import annotations

import re

_INVISIBLE = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 and C1 controls, but tab and newline
    "\u061c"  # Arabic letter mark
    "\u180e"  # Mongolian vowel separator
    "\u200b-\u200f"  # zero-width space, non-joiner, joiner; left-to-right and right-to-left marks
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2060-\u2064"  # word joiner and invisible operators
    "\u2066-\u2069"  # bidi isolates
    "\ufeff"  # zero-width no-break space (byte-order mark)
    "]"
)


def clean_text(text: str) -> str:
    """`text` with Windows line ends made plain and every invisible control, bidi and zero-width character
    removed."""
    return _INVISIBLE.sub("", text.replace("\r\n", "\n"))
