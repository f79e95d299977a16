"""Regenerate the protein task's shipped data and test fixtures from a ProteinGym copy.

    python scripts/make_protein_data.py [--source /work/shared/data/proteingym]

Writes, from `<source>/assays/*.csv` (+ `.wt.txt`), `<source>/DMS_substitutions.csv` and
`<source>/LICENSE.ProteinGym.txt`:

- `src/flexlearn/data/protein/train.jsonl` and `test.jsonl`: each assay cut into batches of 20 the way
  `ProteinTask(batch_size=20, seed=0)` cuts it; batches 0-5 of each assay go to train, 6-11 to test, so no mutant
  is in both. Each line carries a one-line description of the protein and assay from the reference file.
- `tests/tasks/fixtures/proteingym/`: for each assay, its header and every k-th data row copied unchanged (k = 20
  for IF1, 100 for BLAT, 250 for HSP82, so the positions spread over the whole chain), and its `.wt.txt` as is.
- ProteinGym's licence beside both.

Deterministic: running it again gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from flexlearn.tasks.protein import ProteinTask

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "flexlearn" / "data" / "protein"
FIXTURES = ROOT / "tests" / "tasks" / "fixtures" / "proteingym"
LICENCE = "LICENSE.ProteinGym.txt"

BATCH_SIZE = 20
TRAIN_BATCHES = range(0, 6)
TEST_BATCHES = range(6, 12)
# Every k-th data row of each assay goes into the test fixtures.
FIXTURE_STRIDE = {"IF1_ECOLI_Kelsic_2016": 20, "BLAT_ECOLX_Stiffler_2015": 100, "HSP82_YEAST_Flynn_2019": 250}


# The reference file's `selection_assay` names the screen; ProteinGym's DMS_score is one read-out of it, named by
# `raw_DMS_phenotype_name`: "2500" (ug/mL ampicillin) for BLAT, "s (37°C)" for HSP82 (whose `selection_assay` lists
# all six conditions Flynn et al. screened, which would mislead the model), "fitness_rich" for IF1.
SELECTION_OVERRIDE = {
    "BLAT_ECOLX_Stiffler_2015": "growth at 2500 ug/mL ampicillin",
    "HSP82_YEAST_Flynn_2019": "growth under temperature shock (37C)",
    "IF1_ECOLI_Kelsic_2016": "growth in rich medium",
}


def descriptions(reference: Path) -> dict[str, str]:
    """DMS_id -> "Beta-lactamase TEM (Escherichia coli); selection: Growth (...); Stiffler et al. 2015"."""
    with reference.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        row["DMS_id"]: (
            f"{row['molecule_name']} ({row['source_organism']}); "
            f"selection: {SELECTION_OVERRIDE.get(row['DMS_id'], row['selection_assay'])}; "
            f"{row['first_author']} et al. {row['year']}"
        )
        for row in rows
    }


def write_batches(source: Path) -> None:
    """The shipped train/test JSONL files and the licence."""
    about = descriptions(source / "DMS_substitutions.csv")
    problems = ProteinTask(batch_size=BATCH_SIZE, seed=0).load(source / "assays")
    DATA.mkdir(parents=True, exist_ok=True)
    for name, batches in (("train", TRAIN_BATCHES), ("test", TEST_BATCHES)):
        lines = []
        for problem in problems:
            if int(problem.id.rpartition(":")[2]) not in batches:
                continue
            assay = problem.meta["assay"]
            record = {
                "id": problem.id,
                "assay": assay,
                "description": about[assay],
                "wt": problem.meta["wt"],
                "mutants": problem.meta["mutants"],
                "scores": problem.meta["scores"],
            }
            lines.append(json.dumps(record, ensure_ascii=False))
        (DATA / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copyfile(source / LICENCE, DATA / LICENCE)


def write_fixtures(source: Path) -> None:
    """Test fixtures: a header and every k-th row of each assay, byte for byte, with the wild type and licence."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for assay, stride in FIXTURE_STRIDE.items():
        rows = (source / "assays" / f"{assay}.csv").read_bytes().split(b"\n")
        header, data = rows[0], [row for row in rows[1:] if row.strip()]
        kept = [header, *data[stride - 1 :: stride]]
        (FIXTURES / f"{assay}.csv").write_bytes(b"\n".join(kept) + b"\n")
        shutil.copyfile(source / "assays" / f"{assay}.wt.txt", FIXTURES / f"{assay}.wt.txt")
    shutil.copyfile(source / LICENCE, FIXTURES / LICENCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data/proteingym"))
    args = parser.parse_args()
    write_batches(args.source)
    write_fixtures(args.source)


if __name__ == "__main__":
    main()
