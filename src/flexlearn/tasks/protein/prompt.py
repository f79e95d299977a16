"""The prompt for one batch.

The wild type is shown once, GenBank-style: 60 residues a line in groups of 10, each line starting with the position
of its first residue, so the model can tell roughly where in the chain a site lies (termini, domains) without
counting. Each mutant then gets the wild-type residues around it, `window` (default 7) on each side, with the site in
brackets (`H24C  AFCLPVF[H]PETLVKV`). Language models read sequences as multi-letter tokens and cannot reliably find
residue 412 of 709 by counting; without the window a model reasons about a neighbourhood it has guessed, often
wrongly, and a mismatch between the named and the "found" wild-type residue derails it. The window costs some 17
characters a mutant and carries what matters most for a substitution's effect that the sequence alone shows (local
hydrophobicity, glycines and prolines, charge patterns). A 20-mutant batch of the 709-residue HSP82 renders in about
2,000 characters.
"""

from __future__ import annotations

from flexlearn.tasks.protein.data import Batch

_RESIDUES_PER_LINE = 60
_RESIDUES_PER_GROUP = 10


def render_batch(batch: Batch, window: int) -> str:
    """The batch as the model sees it: assay, wild type (once), and each mutant with `window` residues of context
    on each side of its site (none when `window` is 0)."""
    wt, mutants = batch.wt, batch.mutants
    lines = [f"Deep mutational scan: {batch.assay}"]
    if batch.description:
        lines.append(f"Protein and assay: {batch.description}")
    lines.append(f"Wild-type sequence ({len(wt)} residues; each line starts with the position of its first residue):")
    lines.extend(sequence_lines(wt))
    lines.append("")
    context = (
        f"; after each, the wild-type residues around the site ({window} on each side), the site in brackets"
        if window
        else ""
    )
    lines.append(f"Mutants (A42G = the wild-type A at position 42 replaced by G{context}):")
    label_width = max(len(m.text) for m in mutants)
    for i, mutant in enumerate(mutants, 1):
        windows = "; ".join(site_window(wt, position, window) for _, position, _ in mutant.parts)
        lines.append(f"{i:>2}. {mutant.text:<{label_width}}  {windows}".rstrip())
    lines.append("")
    lines.append(f"Predict the fitness of each of these {len(mutants)} mutants in this assay (higher = fitter).")
    return "\n".join(lines)


def sequence_lines(wt: str) -> list[str]:
    """The sequence GenBank-style: 60 residues a line in groups of 10, each line led by its first position."""
    width = len(str(len(wt)))
    lines = []
    for start in range(0, len(wt), _RESIDUES_PER_LINE):
        chunk = wt[start : start + _RESIDUES_PER_LINE]
        groups = " ".join(chunk[i : i + _RESIDUES_PER_GROUP] for i in range(0, len(chunk), _RESIDUES_PER_GROUP))
        lines.append(f"{start + 1:>{width}} {groups}")
    return lines


def site_window(wt: str, position: int, window: int) -> str:
    """`window` residues either side of a 1-based position, the site bracketed; empty when `window` is 0."""
    if not window:
        return ""
    index = position - 1
    left = wt[max(0, index - window) : index]
    right = wt[index + 1 : index + 1 + window]
    # Right-aligned left context puts every bracket in the same column, which makes the list easier to scan.
    return f"{left:>{window}}[{wt[index]}]{right}"
