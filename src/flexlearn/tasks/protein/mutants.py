"""Mutant notation, as in ProteinGym: `A42G` is the wild-type A at position 42 (1-based) replaced by G; a multiple
mutant joins its substitutions with ':' (`A42G:L50P`), each at a different position.

The wild-type letter must match the sequence at that position, which catches off-by-one offsets early; the new
residue must be one of the 20 standard amino acids (a stop `*` or a gap is not a substitution). A synonymous
"mutant" (`A42A`) is rejected too: ProteinGym's substitution sets have none, and one in an input file is more likely
a bug than a measurement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flexlearn.errors import InputError

STANDARD_AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")

# One substitution, strictly (for input files): wild-type letter, 1-based position, new letter.
_SUBSTITUTION = re.compile(r"([A-Z])([1-9]\d*)([A-Z])")


@dataclass(frozen=True)
class Mutant:
    """A validated mutant: its text as written and its substitutions (wild type, 1-based position, new residue)."""

    text: str
    parts: tuple[tuple[str, int, str], ...]


def parse_mutant(text: str, wt: str, *, path: str | None = None, line: int | None = None) -> Mutant:
    """A mutant string (`A42G`, `A42G:L50P`) checked against the wild type; InputError (with path and line) if it
    is malformed, synonymous, off the sequence or names the wrong wild-type residue."""
    parts: list[tuple[str, int, str]] = []
    for part in text.split(":"):
        match = _SUBSTITUTION.fullmatch(part)
        if match is None:
            raise InputError(
                f"malformed mutant {text!r}: expected e.g. 'A42G' (wild type, 1-based position, new residue), "
                "several joined by ':'",
                path=path,
                line=line,
            )
        original, position, new = match.group(1), int(match.group(2)), match.group(3)
        if new not in STANDARD_AMINO_ACIDS:
            raise InputError(f"mutant {text!r}: {new!r} is not a standard amino acid", path=path, line=line)
        if original == new:
            raise InputError(f"synonymous mutant {text!r}: the residue does not change", path=path, line=line)
        if position > len(wt):
            raise InputError(
                f"mutant {text!r}: position {position} is past the end of the {len(wt)}-residue wild type",
                path=path,
                line=line,
            )
        if wt[position - 1] != original:
            raise InputError(
                f"mutant {text!r}: the wild type has {wt[position - 1]!r} at position {position}, not {original!r} "
                "(are the positions offset?)",
                path=path,
                line=line,
            )
        if any(position == earlier for _, earlier, _ in parts):
            raise InputError(f"mutant {text!r} changes position {position} twice", path=path, line=line)
        parts.append((original, position, new))
    return Mutant(text, tuple(parts))


def canonical_mutant(text: str) -> str:
    """A mutant's comparison key: upper case, substitutions sorted by position ("l50p:a42g" -> "A42G:L50P")."""
    parts = text.upper().split(":")
    return ":".join(sorted(parts, key=lambda part: int(part[1:-1]) if part[1:-1].isdigit() else 0))
