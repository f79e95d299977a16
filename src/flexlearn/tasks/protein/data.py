"""Reading assays into batches. Three formats (`load_batches` picks by the path):

- an assay CSV (`mutant,DMS_score,...`, as ProteinGym ships them; other columns are ignored) with the wild type in
  `<assay>.wt.txt` beside it (one line, or FASTA);
- a directory: every `*.csv` in it is an assay as above;
- a JSONL of ready-made batches (what the package ships, `data/protein/`), one per line::

      {"id": "IF1_ECOLI_Kelsic_2016:0", "assay": "IF1_ECOLI_Kelsic_2016", "description": "...",
       "wt": "MAKEDNIEMQ...", "mutants": ["K3E", "T13P", ...], "scores": [0.91, -0.12, ...]}

  "id" (default `<assay>:<n>` counting that assay's lines in the file) and "description" (a line about the protein
  and the assay, shown to the model) are optional. `batch_size` does not apply to JSONL; `max_batches_per_assay`
  keeps each assay's first batches in file order.

Batches of a CSV are made deterministically: an assay's mutants are shuffled with a seeded generator (seed and
assay name), so every batch mixes fit and unfit variants, then cut into `ceil(n / batch_size)` batches whose sizes
differ by at most one (no stray batch of one or two mutants, whose Spearman would mean nothing). Batch ids are
`<assay>:<n>`, n counting from 0 in that order.

Mutants are checked as `mutants` describes. Each problem in any of these files is an InputError naming the file and
line, as is a mutant listed twice in one assay.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexlearn.errors import InputError
from flexlearn.tasks.loader import read_records
from flexlearn.tasks.protein.mutants import Mutant, canonical_mutant, parse_mutant


@dataclass(frozen=True)
class Batch:
    """One problem's worth of one assay: validated mutants and their measured scores, in prompt order."""

    id: str
    assay: str
    wt: str
    mutants: tuple[Mutant, ...]
    scores: tuple[float, ...]
    description: str | None = None


def load_batches(path: str | Path, *, batch_size: int, max_batches_per_assay: int | None, seed: int) -> list[Batch]:
    """Batches from an assay CSV (with its `.wt.txt`), a directory of them, or a JSONL of batches.

    Raises InputError naming the file (and line, where one applies) on bad input.
    """
    path = Path(path)
    if path.is_dir():
        assays = sorted(path.glob("*.csv"))
        if not assays:
            raise InputError("directory holds no assay CSV files (*.csv)", path=str(path))
        return [batch for assay in assays for batch in _load_csv(assay, batch_size, max_batches_per_assay, seed)]
    if path.suffix.lower() == ".csv":
        return _load_csv(path, batch_size, max_batches_per_assay, seed)
    return _load_jsonl(path, max_batches_per_assay)


def _load_csv(path: Path, batch_size: int, max_batches_per_assay: int | None, seed: int) -> list[Batch]:
    """One assay's CSV cut into batches."""
    assay = path.stem
    if not path.is_file():
        # Checked before the wild type, whose error would otherwise hide that the CSV itself is missing.
        raise InputError("file not found", path=str(path))
    wt = read_wild_type(path.with_name(f"{assay}.wt.txt"))
    mutants, scores = read_assay_csv(path, wt)
    order = list(range(len(mutants)))
    # A string seed is hashed with SHA-512 by `random`, so the order is the same on every run and platform.
    random.Random(f"{seed}:{assay}").shuffle(order)
    batches = _split_evenly(order, batch_size)
    if max_batches_per_assay is not None:
        batches = batches[:max_batches_per_assay]
    return [
        Batch(
            id=f"{assay}:{n}",
            assay=assay,
            wt=wt,
            mutants=tuple(mutants[i] for i in batch),
            scores=tuple(scores[i] for i in batch),
        )
        for n, batch in enumerate(batches)
    ]


def _load_jsonl(path: Path, max_batches_per_assay: int | None) -> list[Batch]:
    """Ready-made batches, one JSON object per line."""
    where = str(path)
    batches: list[Batch] = []
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
        if max_batches_per_assay is not None and n >= max_batches_per_assay:
            continue
        batch_id = _text_field(record, "id", where, line) if "id" in record else f"{assay}:{n}"
        if batch_id in first_line_of_id:
            raise InputError(
                f"duplicate id {batch_id!r} (first used on line {first_line_of_id[batch_id]})",
                path=where,
                line=line,
            )
        first_line_of_id[batch_id] = line
        description = _text_field(record, "description", where, line) if "description" in record else None
        batches.append(Batch(batch_id, assay, wt, tuple(mutants), tuple(scores), description))
    return batches


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
