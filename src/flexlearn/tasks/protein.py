"""Protein fitness prediction (ProteinGym DMS substitutions): rank the mutants of a protein by measured fitness.

A deep mutational scan (DMS) measures the fitness of thousands of single (or multiple) amino-acid substitutions of
one protein in one assay. ProteinGym scores a predictor by Spearman's rho between its scores and the measured ones,
per assay, averaged over assays; FLEX (arXiv 2511.06449) reports 0.460 -> 0.602 on it.

Problems. One problem is one *batch* of `batch_size` mutants (default 20) of one assay: the model sees the wild-type
sequence once and a numbered list of mutants, and gives each a fitness score. Batches are made deterministically:
an assay's mutants are shuffled with a seeded generator (seed and assay name), so every batch mixes fit and unfit
variants, then cut into `ceil(n / batch_size)` batches whose sizes differ by at most one (no stray batch of one
or two mutants, whose Spearman would mean nothing). Batch ids are `<assay>:<n>`, n counting from 0 in that order.

Data, three formats (`load` picks by the path):

- an assay CSV (`mutant,DMS_score,...`, as ProteinGym ships them; other columns are ignored) with the wild type in
  `<assay>.wt.txt` beside it (one line, or FASTA);
- a directory: every `*.csv` in it is an assay as above;
- a JSONL of ready-made batches (what the package ships, `data/protein/`), one per line::

      {"id": "IF1_ECOLI_Kelsic_2016:0", "assay": "IF1_ECOLI_Kelsic_2016", "description": "...",
       "wt": "MAKEDNIEMQ...", "mutants": ["K3E", "T13P", ...], "scores": [0.91, -0.12, ...]}

  "id" (default `<assay>:<n>` counting that assay's lines in the file) and "description" (a line about the protein
  and the assay, shown to the model) are optional. `batch_size` does not apply to JSONL; `max_batches_per_assay`
  keeps each assay's first batches in file order.

Mutants are written as in ProteinGym: `A42G` is the wild-type A at position 42 (1-based) replaced by G; a multiple
mutant joins its substitutions with ':' (`A42G:L50P`), each at a different position. The wild-type letter must match
the sequence at that position, which catches off-by-one offsets early; the new residue must be one of the 20
standard amino acids (a stop `*` or a gap is not a substitution). A synonymous "mutant" (`A42A`) is rejected too:
ProteinGym's substitution sets have none, and one in an input file is more likely a bug than a measurement. Each
problem in any of these is an InputError naming the file and line, as is a mutant listed twice in one assay.

The prompt (`render`). The wild type is shown once, GenBank-style: 60 residues a line in groups of 10, each line
starting with the position of its first residue, so the model can tell roughly where in the chain a site lies
(termini, domains) without counting. Each mutant then gets the wild-type residues around it, `window` (default 7) on
each side, with the site in brackets (`H24C  AFCLPVF[H]PETLVKV`). Language models read sequences as multi-letter
tokens and cannot reliably find residue 412 of 709 by counting; without the window a model reasons about a
neighbourhood it has guessed, often wrongly, and a mismatch between the named and the "found" wild-type residue
derails it. The window costs some 17 characters a mutant and carries what matters most for a substitution's
effect that the sequence alone shows (local hydrophobicity, glycines and prolines, charge patterns). A 20-mutant
batch of the 709-residue HSP82 renders in about 2,000 characters.

Replies. One line per mutant, `A42G: 0.73`, any real number, higher = fitter (`answer_format`). The instructions ask
for a fixed scale (1 = as fit as the wild type, 0 = no function) because the headline metric pools the batches of
an assay, which only works if the model scores every batch on the same scale. Parsing is lenient: list numbering,
bullets, Markdown, tables, `A42G = 0.7`, `A42G -> 0.7`, several `A42G: 0.7, L50P: 0.2` on a line and JSON
(`{"A42G": 0.7}`) are read; lower case is accepted; text after the number is ignored; a mutant given twice takes its
last value (models reason first and list the answer last); mutants not in the batch are ignored.

Scoring. A mutant the reply gives no score is treated as average: it gets the median of the scores the reply does
give (within the batch), so a partial answer sits in the middle of the ranking. Dropping it instead would reward
answering only the easy mutants. `Score.data` holds "assay", "pred" (mutant -> score, as parsed, before any
filling), "parsed" (the fraction of the batch given a score) and "rho" (the batch's Spearman).
`Score.value` is (rho + 1) / 2, so 0.5 is a random ranking; a reply from which no score at all is read gets 0.0,
below any ranking, so a format failure is never mistaken for a guess. `Score.correct` (what the learning loop and
accuracy count) is rho > `pass_rho`, 0.3 by default: about what ProteinGym's simplest baseline, a site-independent
conservation model, reaches on these assays (0.33-0.47), and for 20 mutants about the one-sided 10% significance
level of Spearman's rho, so a "correct" batch is one ranked clearly better than chance.

`format_answer` (the reply a worked example ends with) writes the batch's measured scores as ranks scaled to
[0, 1] (ties share a rank): Spearman sees only the order, so ranks lose nothing the metric sees, and they keep
examples on the instructed 0-1 scale whatever the assay's units (BLAT's scores run from -3 to 0.6, IF1's from -0.5
to 1.3).

`aggregate` is ProteinGym's metric: per assay, Spearman between all predicted and measured scores pooled over the
assay's batches (missing predictions filled as above; a batch with none gets the median of the assay's other
predictions), then the mean over assays. It returns "spearman" (the headline), "spearman:<assay>" for each assay
and "parsed" (the fraction of mutants given a score). Undefined correlations (constant predictions, fewer than two
mutants) count as 0.

For context, published zero-shot Spearman on the three assays the package ships (ProteinGym
`benchmarks/DMS_zero_shot/substitutions/Spearman`, v1; HSP82's numbers are for 13,294 variants, the shipped data
comes from v0.1's 13,194):

    model                    BLAT_ECOLX_Stiffler_2015  HSP82_YEAST_Flynn_2019  IF1_ECOLI_Kelsic_2016
    Site-Independent                  0.466                   0.349                  0.328
    EVmutation                        0.707                   0.367                  0.499
    ESM-1v (single)                   0.668                   0.392                  0.540
    ESM-1v (ensemble)                 0.707                   0.417                  0.565
    ESM2 (650M)                       0.731                   0.283                  0.599
    EVE (ensemble)                    0.727                   0.401                  0.537
    TranceptEVE L                     0.733                   0.424                  0.539
    ProtGPT2                          0.158                   0.194                  0.238
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import statistics
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexlearn.errors import ConfigError, InputError
from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.loader import read_records

STANDARD_AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")

# One substitution, strictly (for input files): wild-type letter, 1-based position, new letter.
_SUBSTITUTION = re.compile(r"([A-Z])([1-9]\d*)([A-Z])")

# The same in a reply, where lower case is accepted and a multiple mutant joins substitutions with ':'.
_REPLY_PART = r"[A-Za-z]\d+[A-Za-z]"
_REPLY_MUTANT = rf"{_REPLY_PART}(?::{_REPLY_PART})*"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# A mutant and its score. It must start a line or follow ',', ';', '{' or '[' (a list on one line, JSON), so
# "... unlike A42G, 42 is buried" in reasoning is not read; what may precede it there are bullets, a list number,
# a table's pipe and quotes. Between mutant and number: an optional parenthetical ("A42G (pos 42): 0.3"), then
# separators. A hyphen is a separator only before a space or '>' ("A42G - 0.3", "A42G -> 0.3"), else it is the
# number's minus sign. The number is atomic, so "0.3x" is no number rather than a "0" cut short.
_PREDICTION = re.compile(
    rf"""(?:^|(?<=[,;{{\[]))
    [^\S\n]*(?:[-+>|\u2022\u00b7]+[^\S\n]*)*
    (?:\(?\d{{1,3}}[^\S\n]*[.):|][^\S\n]*)?
    ["']?(?P<mutant>{_REPLY_MUTANT})(?!\w|:{_REPLY_PART})["']?
    [^\S\n]*(?:\([^()\n]*\))?
    (?:[^\S\n]|[:=|>\u2192\u2013\u2014]|-(?=[^\S\n]|>))*
    (?:(?:predicted[^\S\n]+)?(?:fitness|score)[^\S\n]*[:=]?[^\S\n]*)?
    (?P<value>(?>{_NUMBER}))(?!\w)""",
    re.MULTILINE | re.VERBOSE | re.IGNORECASE,
)
# Markdown emphasis and code marks, dropped before reading so "**A42G**: `0.7`" reads like "A42G: 0.7".
_MARKUP = str.maketrans("", "", "*`")

_RESIDUES_PER_LINE = 60
_RESIDUES_PER_GROUP = 10


@dataclass(frozen=True)
class Mutant:
    """A validated mutant: its text as written and its substitutions (wild type, 1-based position, new residue)."""

    text: str
    parts: tuple[tuple[str, int, str], ...]


class ProteinTask:
    """ProteinGym DMS fitness prediction, one problem per batch of mutants; headline metric: Spearman per assay,
    averaged over assays. See the module docstring for the data formats, the prompt, parsing and scoring.

    Options: `batch_size` mutants per problem (CSV input only), `max_batches_per_assay` (None = all), `seed` for the
    shuffle that makes batches, `window` residues of wild-type context on each side of a site in the prompt, and
    `pass_rho`, the batch Spearman above which `Score.correct` holds.
    """

    name = "protein"
    metric = "spearman"
    answer_format = (
        "After any reasoning, end your reply with one line per mutant, in the order given, of the form "
        "`A42G: 0.73`: the mutant as written, a colon, and its predicted fitness, a number where higher means "
        "fitter. Use the same scale for every protein and batch: 1 = as fit as the wild type, 0 = no function, "
        "values between for partial loss, above 1 if fitter than the wild type. Score every mutant."
    )

    def __init__(
        self,
        batch_size: int = 20,
        max_batches_per_assay: int | None = None,
        seed: int = 0,
        window: int = 7,
        pass_rho: float = 0.3,
    ) -> None:
        if batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2 (Spearman needs two mutants), got {batch_size}")
        if max_batches_per_assay is not None and max_batches_per_assay < 1:
            raise ConfigError(f"max_batches_per_assay must be at least 1 or None, got {max_batches_per_assay}")
        if window < 0:
            raise ConfigError(f"window must be 0 or more, got {window}")
        if not -1.0 <= pass_rho < 1.0:
            raise ConfigError(f"pass_rho must be in [-1, 1), got {pass_rho}")
        self.batch_size = batch_size
        self.max_batches_per_assay = max_batches_per_assay
        self.seed = seed
        self.window = window
        self.pass_rho = pass_rho

    # -- loading --------------------------------------------------------------------------------------------------

    def load(self, path: str | Path) -> list[Problem]:
        """Batches from an assay CSV (with its `.wt.txt`), a directory of them, or a JSONL of batches.

        Raises InputError naming the file (and line, where one applies) on bad input.
        """
        path = Path(path)
        if path.is_dir():
            assays = sorted(path.glob("*.csv"))
            if not assays:
                raise InputError("directory holds no assay CSV files (*.csv)", path=str(path))
            return [problem for assay in assays for problem in self._load_csv(assay)]
        if path.suffix.lower() == ".csv":
            return self._load_csv(path)
        return self._load_jsonl(path)

    def _load_csv(self, path: Path) -> list[Problem]:
        """One assay's CSV cut into batches."""
        assay = path.stem
        if not path.is_file():
            # Checked before the wild type, whose error would otherwise hide that the CSV itself is missing.
            raise InputError("file not found", path=str(path))
        wt = read_wild_type(path.with_name(f"{assay}.wt.txt"))
        mutants, scores = read_assay_csv(path, wt)
        order = list(range(len(mutants)))
        # A string seed is hashed with SHA-512 by `random`, so the order is the same on every run and platform.
        random.Random(f"{self.seed}:{assay}").shuffle(order)
        batches = _split_evenly(order, self.batch_size)
        if self.max_batches_per_assay is not None:
            batches = batches[: self.max_batches_per_assay]
        return [
            self._problem(
                f"{assay}:{n}",
                assay,
                wt,
                [mutants[i] for i in batch],
                [scores[i] for i in batch],
                description=None,
            )
            for n, batch in enumerate(batches)
        ]

    def _load_jsonl(self, path: Path) -> list[Problem]:
        """Ready-made batches, one JSON object per line."""
        where = str(path)
        problems: list[Problem] = []
        first_line_of_id: dict[str, int] = {}
        wild_types: dict[str, tuple[str, int]] = {}
        seen_mutants: dict[tuple[str, str], int] = {}
        batches_of: dict[str, int] = {}
        for line, record in read_records(path):
            assay = _text_field(record, "assay", where, line)
            wt = _wild_type_text(_text_field(record, "wt", where, line), where, line)
            if assay in wild_types and wild_types[assay][0] != wt:
                raise InputError(
                    f"assay {assay!r} has a different wild type here than on line {wild_types[assay][1]}",
                    path=where,
                    line=line,
                )
            wild_types.setdefault(assay, (wt, line))
            mutant_texts = record.get("mutants")
            values = record.get("scores")
            if not isinstance(mutant_texts, list) or not mutant_texts:
                raise InputError("field 'mutants' must be a non-empty list of mutant strings", path=where, line=line)
            if not isinstance(values, list) or len(values) != len(mutant_texts):
                raise InputError(
                    f"field 'scores' must be a list of {len(mutant_texts)} numbers, one per mutant",
                    path=where,
                    line=line,
                )
            mutants = []
            for text in mutant_texts:
                if not isinstance(text, str):
                    raise InputError(f"mutant {text!r} is not a string", path=where, line=line)
                mutant = parse_mutant(text, wt, path=where, line=line)
                key = (assay, canonical_mutant(mutant.text))
                if key in seen_mutants:
                    raise InputError(
                        f"mutant {mutant.text} of {assay} is already in the batch on line {seen_mutants[key]}",
                        path=where,
                        line=line,
                    )
                seen_mutants[key] = line
                mutants.append(mutant)
            scores = [_finite_number(value, "scores", where, line) for value in values]
            n = batches_of.get(assay, 0)
            batches_of[assay] = n + 1
            if self.max_batches_per_assay is not None and n >= self.max_batches_per_assay:
                continue
            problem_id = _text_field(record, "id", where, line) if "id" in record else f"{assay}:{n}"
            if problem_id in first_line_of_id:
                raise InputError(
                    f"duplicate id {problem_id!r} (first used on line {first_line_of_id[problem_id]})",
                    path=where,
                    line=line,
                )
            first_line_of_id[problem_id] = line
            description = _text_field(record, "description", where, line) if "description" in record else None
            problems.append(self._problem(problem_id, assay, wt, mutants, scores, description=description))
        return problems

    def _problem(
        self,
        problem_id: str,
        assay: str,
        wt: str,
        mutants: Sequence[Mutant],
        scores: Sequence[float],
        *,
        description: str | None,
    ) -> Problem:
        """A batch as a Problem: the rendered prompt as its question, the measured scores as JSON for its answer."""
        texts = [m.text for m in mutants]
        meta: dict[str, Any] = {"assay": assay, "wt": wt, "mutants": texts, "scores": list(scores)}
        if description:
            meta["description"] = description
        question = self._render(assay, wt, mutants, description)
        answer = json.dumps(dict(zip(texts, scores, strict=True)))
        return Problem(id=problem_id, question=question, answer=answer, meta=meta)

    # -- the prompt -----------------------------------------------------------------------------------------------

    def render(self, problem: Problem) -> str:
        """The batch as the model sees it: assay, wild type (once), and each mutant with its local context."""
        return problem.question

    def _render(self, assay: str, wt: str, mutants: Sequence[Mutant], description: str | None) -> str:
        """The prompt text for one batch (built once, at load, and kept as `Problem.question`)."""
        lines = [f"Deep mutational scan: {assay}"]
        if description:
            lines.append(f"Protein and assay: {description}")
        lines.append(
            f"Wild-type sequence ({len(wt)} residues; each line starts with the position of its first residue):"
        )
        lines.extend(_sequence_lines(wt))
        lines.append("")
        context = (
            f"; after each, the wild-type residues around the site ({self.window} on each side), the site in brackets"
            if self.window
            else ""
        )
        lines.append(f"Mutants (A42G = the wild-type A at position 42 replaced by G{context}):")
        label_width = max(len(m.text) for m in mutants)
        for i, mutant in enumerate(mutants, 1):
            windows = "; ".join(self._site_window(wt, position) for _, position, _ in mutant.parts)
            lines.append(f"{i:>2}. {mutant.text:<{label_width}}  {windows}".rstrip())
        lines.append("")
        lines.append(f"Predict the fitness of each of these {len(mutants)} mutants in this assay (higher = fitter).")
        return "\n".join(lines)

    def _site_window(self, wt: str, position: int) -> str:
        """`window` residues either side of a 1-based position, the site bracketed; empty when `window` is 0."""
        if not self.window:
            return ""
        index = position - 1
        left = wt[max(0, index - self.window) : index]
        right = wt[index + 1 : index + 1 + self.window]
        # Right-aligned left context puts every bracket in the same column, which makes the list easier to scan.
        return f"{left:>{self.window}}[{wt[index]}]{right}"

    # -- replies and scores ---------------------------------------------------------------------------------------

    def extract_answer(self, reply: str) -> str | None:
        """Every mutant score read from the reply, as `A42G: 0.73` lines in order of first mention; None if none."""
        predictions = parse_predictions(reply)
        if not predictions:
            return None
        return "\n".join(f"{mutant}: {value:g}" for mutant, value in predictions.items())

    def score(self, reply: str, problem: Problem) -> Score:
        """Spearman between the reply's scores and the measured ones over the batch (see the module docstring)."""
        assay = _assay_of(problem, None)
        mutants, truth = _reference(problem)
        pred = _batch_predictions(reply, mutants)
        parsed = len(pred) / len(mutants) if mutants else 0.0
        data: dict[str, Any] = {"assay": assay, "pred": pred, "parsed": parsed}
        if not pred:
            data["rho"] = 0.0
            return Score(
                correct=False, value=0.0, extracted=None, detail="no mutant scores found in the reply", data=data
            )
        rho = spearman(_filled(mutants, pred), truth)
        data["rho"] = rho
        correct = rho > self.pass_rho
        extracted = "; ".join(f"{mutant}: {value:g}" for mutant, value in pred.items())
        detail = f"Spearman {rho:+.3f} over {len(mutants)} mutants ({len(pred)} scored in the reply)"
        value = min(1.0, max(0.0, (rho + 1.0) / 2.0))
        return Score(correct=correct, value=value, extracted=extracted, detail=detail, data=data)

    def format_answer(self, problem: Problem) -> str:
        """The measured scores as a correct reply would give them: one `A42G: 0.73` line per mutant, the scores
        turned into ranks scaled to [0, 1] (order kept, ties shared; see the module docstring)."""
        mutants, truth = _reference(problem)
        return "\n".join(f"{mutant}: {value}" for mutant, value in zip(mutants, _scaled_ranks(truth), strict=True))

    def aggregate(self, items: Sequence[tuple[Problem, Score]]) -> dict[str, float]:
        """ProteinGym's metric: Spearman per assay over its pooled batches, averaged over assays. Accepts repeats.

        Returns "spearman", "spearman:<assay>" for every assay present and "parsed" (the fraction of mutants the
        replies scored); 0.0 for both when `items` is empty. A score without "pred" in `data` (e.g. an attempt the
        model call failed on) counts as a reply with no predictions.
        """
        pooled: dict[str, tuple[list[float | None], list[float]]] = {}
        given = total = 0
        for problem, score in items:
            mutants, truth = _reference(problem)
            raw = score.data.get("pred")
            pred = {m: float(raw[m]) for m in mutants if m in raw} if isinstance(raw, dict) else {}
            given += len(pred)
            total += len(mutants)
            predicted, measured = pooled.setdefault(_assay_of(problem, score), ([], []))
            # A batch with no predictions stays None here and is filled from the whole assay below.
            predicted.extend(_filled(mutants, pred) if pred else [None] * len(mutants))
            measured.extend(truth)
        values: dict[str, float] = {}
        for assay, (predicted, measured) in pooled.items():
            known = [value for value in predicted if value is not None]
            fill = statistics.median(known) if known else 0.0
            values[f"spearman:{assay}"] = spearman([fill if v is None else v for v in predicted], measured)
        per_assay = list(values.values())
        values = {
            self.metric: sum(per_assay) / len(per_assay) if per_assay else 0.0,
            **values,
            "parsed": given / total if total else 0.0,
        }
        return values


# -- reading files --------------------------------------------------------------------------------------------------


def read_wild_type(path: Path) -> str:
    """The wild-type sequence in a `.wt.txt` file: one line, or several (joined), or FASTA (header lines skipped)."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(
            "wild-type sequence file not found: each assay CSV needs its wild type in <assay>.wt.txt beside it",
            path=where,
        ) from None
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", path=where) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path=where) from None
    sequence = "".join(line.strip() for line in text.splitlines() if not line.startswith(">"))
    return _wild_type_text(sequence, where, None)


def read_assay_csv(path: Path, wt: str) -> tuple[list[Mutant], list[float]]:
    """The mutants and DMS scores of an assay CSV, each mutant checked against the wild type."""
    where = str(path)
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise InputError("file not found", path=where) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path=where) from None
    mutants: list[Mutant] = []
    scores: list[float] = []
    first_line_of: dict[str, int] = {}
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError("empty file: expected a header with 'mutant' and 'DMS_score'", path=where)
            columns = [name.strip() for name in header]
            missing = [name for name in ("mutant", "DMS_score") if name not in columns]
            if missing:
                raise InputError(
                    f"header lacks column {' and '.join(map(repr, missing))}; it has {', '.join(columns)}",
                    path=where,
                    line=1,
                )
            mutant_at, score_at = columns.index("mutant"), columns.index("DMS_score")
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) <= max(mutant_at, score_at):
                    raise InputError(f"expected {len(columns)} columns, got {len(row)}", path=where, line=line)
                mutant = parse_mutant(row[mutant_at].strip(), wt, path=where, line=line)
                key = canonical_mutant(mutant.text)
                if key in first_line_of:
                    raise InputError(
                        f"mutant {mutant.text} is listed twice (first on line {first_line_of[key]})",
                        path=where,
                        line=line,
                    )
                first_line_of[key] = line
                mutants.append(mutant)
                scores.append(_finite_number(row[score_at].strip(), "DMS_score", where, line))
        except UnicodeDecodeError:
            raise InputError("not valid UTF-8", path=where) from None
        except csv.Error as exc:
            raise InputError(f"not valid CSV: {exc}", path=where, line=reader.line_num) from None
    if len(mutants) < 2:
        raise InputError(f"an assay needs at least 2 mutants to rank, found {len(mutants)}", path=where)
    return mutants, scores


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


# -- reading replies ------------------------------------------------------------------------------------------------


def parse_predictions(reply: str) -> dict[str, float]:
    """mutant (canonical, see `canonical_mutant`) -> score for every mutant score in a reply; a mutant given twice
    keeps its last value, the keys stay in order of first mention. Never raises."""
    predictions: dict[str, float] = {}
    for mutant, value in _predictions(reply):
        predictions[mutant] = value
    return predictions


def _predictions(reply: str) -> Iterator[tuple[str, float]]:
    """(canonical mutant, score) pairs in reply order; numbers that are not finite are skipped."""
    # U+2212, the typographic minus, which float() does not read.
    text = reply.translate(_MARKUP).replace("\u2212", "-")
    for match in _PREDICTION.finditer(text):
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        if math.isfinite(value):
            yield canonical_mutant(match.group("mutant")), value


def _batch_predictions(reply: str, mutants: Sequence[str]) -> dict[str, float]:
    """The reply's scores for the batch's mutants, keyed as the batch writes them, in batch order."""
    read = parse_predictions(reply)
    return {m: read[key] for m in mutants if (key := canonical_mutant(m)) in read}


# -- statistics -----------------------------------------------------------------------------------------------------


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho, or 0.0 where it is undefined (fewer than two pairs, or either side constant)."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return 0.0
    # Imported here: scipy.stats takes about a second to import, which listing or loading tasks should not pay.
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        # Checked above; this keeps any remaining degenerate case (e.g. huge magnitudes) from spamming warnings.
        warnings.simplefilter("ignore")
        rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else 0.0


def _filled(mutants: Sequence[str], pred: dict[str, float]) -> list[float]:
    """Predictions for every mutant, a missing one given the median of the others (the middle of the ranking)."""
    fill = statistics.median(pred.values()) if pred else 0.0
    return [pred.get(m, fill) for m in mutants]


def _scaled_ranks(values: Sequence[float]) -> list[str]:
    """Average ranks scaled to [0, 1], written with just enough decimals to keep distinct ranks apart."""
    n = len(values)
    if n < 2:
        return ["1" for _ in values]
    order = sorted(range(n), key=lambda i: values[i])
    ranks = [0.0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2
        start = end + 1
    # Rounding error must stay under a quarter of the step 1/(n-1), so no two ranks round to the same text.
    decimals = max(2, math.ceil(math.log10(2 * (n - 1))))
    return [f"{rank / (n - 1):.{decimals}f}" for rank in ranks]


# -- helpers --------------------------------------------------------------------------------------------------------


def _reference(problem: Problem) -> tuple[list[str], list[float]]:
    """The batch's mutants and measured scores, from `Problem.answer` (which a report rebuilt from records keeps)."""
    try:
        reference = json.loads(problem.answer)
    except json.JSONDecodeError:
        reference = None
    if not isinstance(reference, dict):
        # Not a protein reference: score nothing rather than raise, as the Task contract asks of `score`.
        return [], []
    mutants = [str(m) for m in reference]
    return mutants, [float(reference[m]) for m in reference]


def _assay_of(problem: Problem, score: Score | None) -> str:
    """The assay a batch belongs to: its meta, else what its score recorded, else the id before its last ':'."""
    assay = problem.meta.get("assay")
    if not assay and score is not None:
        assay = score.data.get("assay")
    return str(assay) if assay else problem.id.rpartition(":")[0] or problem.id


def _split_evenly(items: Sequence[int], batch_size: int) -> list[list[int]]:
    """`items` cut into ceil(n / batch_size) consecutive batches whose sizes differ by at most one."""
    count = max(1, math.ceil(len(items) / batch_size))
    size, extra = divmod(len(items), count)
    batches, start = [], 0
    for n in range(count):
        end = start + size + (1 if n < extra else 0)
        batches.append(list(items[start:end]))
        start = end
    return batches


def _sequence_lines(wt: str) -> list[str]:
    """The sequence GenBank-style: 60 residues a line in groups of 10, each line led by its first position."""
    width = len(str(len(wt)))
    lines = []
    for start in range(0, len(wt), _RESIDUES_PER_LINE):
        chunk = wt[start : start + _RESIDUES_PER_LINE]
        groups = " ".join(chunk[i : i + _RESIDUES_PER_GROUP] for i in range(0, len(chunk), _RESIDUES_PER_GROUP))
        lines.append(f"{start + 1:>{width}} {groups}")
    return lines


def _wild_type_text(sequence: str, where: str, line: int | None) -> str:
    """A wild-type sequence, checked to be upper-case letters only."""
    sequence = sequence.strip()
    if not sequence:
        raise InputError("the wild-type sequence is empty", path=where, line=line)
    bad = sorted({char for char in sequence if not ("A" <= char <= "Z")})
    if bad:
        raise InputError(
            f"the wild-type sequence holds characters that are not residue letters: {''.join(bad)!r}",
            path=where,
            line=line,
        )
    return sequence


def _text_field(record: dict[str, Any], key: str, where: str, line: int) -> str:
    """A required non-empty string field of a JSONL record."""
    if key not in record:
        raise InputError(f"missing field {key!r}", path=where, line=line)
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"field {key!r} must be a non-empty string", path=where, line=line)
    return value.strip()


def _finite_number(value: Any, field: str, where: str, line: int) -> float:
    """A finite number, from a JSON number or CSV text; InputError otherwise."""
    if isinstance(value, bool):
        raise InputError(f"{field}: {value!r} is not a number", path=where, line=line)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{field}: {value!r} is not a number", path=where, line=line) from None
    if not math.isfinite(number):
        raise InputError(f"{field}: {value!r} is not a finite number", path=where, line=line)
    return number
