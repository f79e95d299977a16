"""Protein fitness prediction (ProteinGym DMS substitutions): rank the mutants of a protein by measured fitness.

A deep mutational scan (DMS) measures the fitness of thousands of single (or multiple) amino-acid substitutions of
one protein in one assay. ProteinGym scores a predictor by Spearman's rho between its scores and the measured ones,
per assay, averaged over assays; FLEX (arXiv 2511.06449) reports 0.460 -> 0.602 on it. One problem is one batch of
mutants of one assay: the model sees the wild type once and a numbered list of mutants, and scores each.

One module per job, each documenting its part of the design:

- `mutants`: the mutant notation (`A42G`, `A42G:L50P`) and its checks;
- `data`: reading assay CSVs, directories of them and batch JSONL into batches;
- `prompt`: how a batch is shown to the model;
- `replies`: reading mutant scores out of a reply;
- `metric`: Spearman, filling unscored mutants, ranks;
- `task`: `ProteinTask`, which ties them to the task seam and scores batches.

Published zero-shot Spearman of other predictors on the shipped assays, for context, is in `docs/protein.md`.
"""

from flexlearn.tasks.protein.data import Batch, load_batches, read_assay_csv, read_wild_type
from flexlearn.tasks.protein.metric import spearman
from flexlearn.tasks.protein.mutants import STANDARD_AMINO_ACIDS, Mutant, canonical_mutant, parse_mutant
from flexlearn.tasks.protein.replies import parse_predictions
from flexlearn.tasks.protein.task import ProteinTask

__all__ = [
    "STANDARD_AMINO_ACIDS",
    "Batch",
    "Mutant",
    "ProteinTask",
    "canonical_mutant",
    "load_batches",
    "parse_mutant",
    "parse_predictions",
    "read_assay_csv",
    "read_wild_type",
    "spearman",
]
