"""ProteinTask: batches of ProteinGym mutants, lenient reading of scored lists, Spearman per batch and per assay."""

from __future__ import annotations

import csv
import json
import random
import shutil
import statistics
import warnings
from pathlib import Path

import pytest
from scipy.stats import spearmanr

from flexlearn.errors import ConfigError, InputError
from flexlearn.tasks import MetricTask, Problem, Score, Task, get_task
from flexlearn.tasks.protein import ProteinTask, canonical_mutant, parse_predictions, spearman

FIXTURES = Path(__file__).parent / "fixtures" / "proteingym"
SHIPPED = Path(__file__).parents[2] / "src" / "flexlearn" / "data" / "protein"
IF1 = "IF1_ECOLI_Kelsic_2016"
BLAT = "BLAT_ECOLX_Stiffler_2015"
HSP82 = "HSP82_YEAST_Flynn_2019"
TASK = ProteinTask()


def csv_rows(assay: str) -> list[dict[str, str]]:
    with (FIXTURES / f"{assay}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def copy_assay(assay: str, directory: Path) -> Path:
    """The fixture assay and its wild type, copied into `directory`; returns the CSV's path."""
    shutil.copy(FIXTURES / f"{assay}.csv", directory)
    shutil.copy(FIXTURES / f"{assay}.wt.txt", directory)
    return directory / f"{assay}.csv"


def replace_line(path: Path, line: int, text: str) -> None:
    """Overwrite one (1-based) line of a text file."""
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def reply_for(problem: Problem, values: list[float]) -> str:
    return "\n".join(f"{m}: {v}" for m, v in zip(problem.meta["mutants"], values, strict=True))


# -- the protocol ---------------------------------------------------------------------------------------------------


def test_is_a_metric_task() -> None:
    assert isinstance(TASK, Task)
    assert isinstance(TASK, MetricTask)
    assert (TASK.name, TASK.metric) == ("protein", "spearman")
    assert "A42G: 0.73" in TASK.answer_format


def test_found_by_module_and_class() -> None:
    assert isinstance(get_task("flexlearn.tasks.protein:ProteinTask"), ProteinTask)


@pytest.mark.parametrize(
    "options",
    [{"batch_size": 1}, {"max_batches_per_assay": 0}, {"window": -1}, {"pass_rho": 1.0}],
)
def test_bad_options(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ProteinTask(**options)  # type: ignore[arg-type]


# -- loading --------------------------------------------------------------------------------------------------------


def test_loads_an_assay_csv_in_even_seeded_batches() -> None:
    rows = csv_rows(IF1)
    problems = TASK.load(FIXTURES / f"{IF1}.csv")
    # 68 mutants in ceil(68 / 20) = 4 batches of 17: no stray small batch.
    assert [p.id for p in problems] == [f"{IF1}:{n}" for n in range(4)]
    assert [len(p.meta["mutants"]) for p in problems] == [17, 17, 17, 17]
    by_mutant = {row["mutant"]: float(row["DMS_score"]) for row in rows}
    seen = [m for p in problems for m in p.meta["mutants"]]
    assert sorted(seen) == sorted(by_mutant)
    for p in problems:
        assert p.meta["assay"] == IF1
        assert json.loads(p.answer) == {m: by_mutant[m] for m in p.meta["mutants"]}
        assert p.meta["scores"] == [by_mutant[m] for m in p.meta["mutants"]]
    # Shuffled (not file order), the same on every load, different for another seed.
    assert seen != [row["mutant"] for row in rows]
    assert [p.meta["mutants"] for p in TASK.load(FIXTURES / f"{IF1}.csv")] == [p.meta["mutants"] for p in problems]
    other = ProteinTask(seed=1).load(FIXTURES / f"{IF1}.csv")
    assert [p.meta["mutants"] for p in other] != [p.meta["mutants"] for p in problems]


def test_loads_a_directory_of_assays_with_options() -> None:
    problems = TASK.load(FIXTURES)
    assert {p.meta["assay"] for p in problems} == {IF1, BLAT, HSP82}
    assert sum(len(p.meta["mutants"]) for p in problems) == 68 + 49 + 52
    small = ProteinTask(batch_size=10, max_batches_per_assay=2).load(FIXTURES)
    assert [p.id for p in small] == [f"{a}:{n}" for a in (BLAT, HSP82, IF1) for n in (0, 1)]
    # At most batch_size, and as even as the assay allows (52 HSP82 mutants: 6 batches of 8 or 9).
    assert [len(p.meta["mutants"]) for p in small] == [10, 10, 9, 9, 10, 10]


def test_loads_the_shipped_batches() -> None:
    train, test = TASK.load(SHIPPED / "train.jsonl"), TASK.load(SHIPPED / "test.jsonl")
    assert len(train) == len(test) == 18
    assert all(len(p.meta["mutants"]) == 20 for p in train + test)
    assert {p.id for p in test} == {f"{a}:{n}" for a in (BLAT, HSP82, IF1) for n in range(6, 12)}
    shared = {(p.meta["assay"], m) for p in train for m in p.meta["mutants"]} & {
        (p.meta["assay"], m) for p in test for m in p.meta["mutants"]
    }
    assert not shared
    assert "Beta-lactamase" in TASK.render(next(p for p in test if p.meta["assay"] == BLAT))
    assert len(ProteinTask(max_batches_per_assay=2).load(SHIPPED / "test.jsonl")) == 6


def test_jsonl_batches_match_the_csv_they_came_from(tmp_path: Path) -> None:
    from_csv = TASK.load(FIXTURES / f"{BLAT}.csv")
    path = tmp_path / "batches.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"assay": p.meta["assay"], "wt": p.meta["wt"], "mutants": p.meta["mutants"], "scores": s})
            for p in from_csv
            for s in [p.meta["scores"]]
        )
    )
    from_jsonl = TASK.load(path)
    # Without "id", batches are numbered per assay in file order, as from the CSV.
    assert [(p.id, p.answer, p.question) for p in from_jsonl] == [(p.id, p.answer, p.question) for p in from_csv]


def test_missing_wild_type_file_is_named(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / f"{IF1}.csv", tmp_path)
    with pytest.raises(InputError, match=r"IF1_ECOLI_Kelsic_2016\.wt\.txt") as caught:
        TASK.load(tmp_path / f"{IF1}.csv")
    assert caught.value.path == str(tmp_path / f"{IF1}.wt.txt")


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as caught:
        TASK.load(tmp_path / "absent.csv")
    assert caught.value.path == str(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="no assay CSV files"):
        TASK.load(tmp_path)
    with pytest.raises(InputError, match="file not found"):
        TASK.load(tmp_path / "absent.jsonl")


def test_wild_type_file_may_be_fasta(tmp_path: Path) -> None:
    path = copy_assay(IF1, tmp_path)
    wt = (FIXTURES / f"{IF1}.wt.txt").read_text()
    (tmp_path / f"{IF1}.wt.txt").write_text(f">IF1_ECOLI\n{wt[:40]}\n{wt[40:]}\n")
    assert [p.question for p in TASK.load(path)] == [p.question for p in TASK.load(FIXTURES / f"{IF1}.csv")]


def test_wild_type_mismatch_names_file_and_line(tmp_path: Path) -> None:
    path = copy_assay(IF1, tmp_path)
    # Keep line 3's real position and new residue, but name the wrong wild-type residue.
    mutant, score, label = path.read_text().splitlines()[2].split(",")
    position = int(mutant[1:-1])
    wrong = "W" if mutant[0] != "W" else "A"
    replace_line(path, 3, f"{wrong}{position}{mutant[-1]},{score},{label}")
    with pytest.raises(InputError, match=rf"wild type has '{mutant[0]}' at position {position}") as caught:
        TASK.load(path)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert f"{path}:3:" in str(caught.value)


def test_wild_type_mismatch_in_jsonl_names_the_line(tmp_path: Path) -> None:
    batch = json.loads((SHIPPED / "test.jsonl").read_text().splitlines()[0])
    shifted = dict(batch, wt="M" + batch["wt"])  # an offset by one: every position now names the wrong residue
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(batch) + "\n\n" + json.dumps(dict(shifted, assay="other")) + "\n")
    with pytest.raises(InputError, match="are the positions offset") as caught:
        TASK.load(path)
    assert caught.value.line == 3


@pytest.mark.parametrize(
    ("mutant", "complaint"),
    [
        ("M1M", "synonymous"),
        ("M1*", "malformed"),
        ("M1", "malformed"),
        ("1H", "malformed"),
        ("M1B", "not a standard amino acid"),
        ("M0H", "malformed"),
        ("A73G", "past the end of the 72-residue"),
        ("M1H:M1G", "changes position 1 twice"),
        ("M1H;A2G", "malformed"),
        ("", "malformed"),
    ],
)
def test_bad_mutants_name_the_line(tmp_path: Path, mutant: str, complaint: str) -> None:
    path = copy_assay(IF1, tmp_path)
    replace_line(path, 5, f"{mutant},0.5,1")
    with pytest.raises(InputError, match=complaint) as caught:
        TASK.load(path)
    assert caught.value.line == 5


@pytest.mark.parametrize(
    ("row", "complaint"),
    [("M1H,,1", "DMS_score: '' is not a number"), ("M1H,nan,1", "not a finite number"), ("M1H", "columns")],
)
def test_bad_scores_name_the_line(tmp_path: Path, row: str, complaint: str) -> None:
    path = copy_assay(IF1, tmp_path)
    replace_line(path, 4, row)
    with pytest.raises(InputError, match=complaint) as caught:
        TASK.load(path)
    assert caught.value.line == 4


def test_duplicate_mutant_and_missing_column(tmp_path: Path) -> None:
    path = copy_assay(IF1, tmp_path)
    lines = path.read_text().splitlines()
    replace_line(path, 6, lines[1])
    with pytest.raises(InputError, match="listed twice \\(first on line 2\\)") as caught:
        TASK.load(path)
    assert caught.value.line == 6
    replace_line(path, 1, "variant,DMS_score")
    with pytest.raises(InputError, match="lacks column 'mutant'"):
        TASK.load(path)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"mutants": []}, "'mutants' must be a non-empty list"),
        ({"scores": [0.1]}, "'scores' must be a list of 20 numbers"),
        ({"wt": "MAK1"}, "not residue letters"),
        ({"assay": ""}, "'assay' must be a non-empty string"),
    ],
)
def test_bad_jsonl_batches_name_the_line(tmp_path: Path, change: dict[str, object], complaint: str) -> None:
    batch = json.loads((SHIPPED / "test.jsonl").read_text().splitlines()[0])
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(batch) + "\n" + json.dumps(dict(batch, **change)) + "\n")
    with pytest.raises(InputError, match=complaint) as caught:
        TASK.load(path)
    assert caught.value.line == 2


def test_a_mutant_in_two_batches_is_rejected(tmp_path: Path) -> None:
    lines = (SHIPPED / "test.jsonl").read_text().splitlines()
    path = tmp_path / "b.jsonl"
    path.write_text(lines[0] + "\n" + lines[0].replace(":6", ":99") + "\n")
    with pytest.raises(InputError, match="already in the batch on line 1") as caught:
        TASK.load(path)
    assert caught.value.line == 2


def test_multiple_mutants_load_render_and_score(tmp_path: Path) -> None:
    path = copy_assay(IF1, tmp_path)
    wt = (FIXTURES / f"{IF1}.wt.txt").read_text()
    double = ":".join(f"{wt[i - 1]}{i}{'W' if wt[i - 1] != 'W' else 'A'}" for i in (10, 42))
    replace_line(path, 2, f"{double},-0.25,0")
    problems = ProteinTask(batch_size=100).load(path)
    (problem,) = problems
    assert double in problem.meta["mutants"]
    line = next(line for line in problem.question.splitlines() if double in line)
    assert f"[{wt[9]}]" in line and f"[{wt[41]}]" in line and ";" in line
    truth = problem.meta["scores"]
    reply = reply_for(problem, truth).replace(double, double.lower())
    assert TASK.score(reply, problem).data["rho"] == pytest.approx(1.0)


def test_canonical_mutant() -> None:
    assert canonical_mutant("l50p:a42g") == "A42G:L50P"
    assert canonical_mutant("A42G") == "A42G"


# -- the prompt -----------------------------------------------------------------------------------------------------


def test_render_fits_a_modest_context_for_the_longest_assay(tmp_path: Path) -> None:
    wt = (FIXTURES / f"{HSP82}.wt.txt").read_text()
    assert len(wt) == 709
    rows = csv_rows(HSP82)[:20]
    batch = {"assay": HSP82, "wt": wt, "mutants": [r["mutant"] for r in rows], "scores": [0.0] * 20}
    (tmp_path / "b.jsonl").write_text(json.dumps(batch))
    (twenty,) = TASK.load(tmp_path / "b.jsonl")
    text = TASK.render(twenty)
    assert len(text) < 3000
    # The wild type appears once, in numbered lines of 60.
    assert text.count("MASETFEFQA") == 1
    assert "661 PTSFASRINR" in text
    # Every mutant is listed, with its own site bracketed in a window of the wild type.
    for mutant in twenty.meta["mutants"]:
        line = next(line for line in text.splitlines() if f" {mutant} " in line)
        position = int(mutant[1:-1])
        left = wt[max(0, position - 8) : position - 1]
        right = wt[position : position + 7]
        assert f"{left}[{wt[position - 1]}]{right}" in line


def test_render_with_a_batch_of_twenty_of_the_longest_assay_and_a_description() -> None:
    (longest,) = (p for p in TASK.load(SHIPPED / "test.jsonl") if p.id == f"{HSP82}:6")
    assert len(longest.meta["mutants"]) == 20
    assert len(TASK.render(longest)) < 3000


def test_window_can_be_turned_off() -> None:
    problem = ProteinTask(window=0).load(FIXTURES / f"{IF1}.csv")[0]
    assert "[" not in problem.question


# -- replies --------------------------------------------------------------------------------------------------------


def test_parses_messy_replies() -> None:
    reply = """Let me think. A2C: 42 is near the N-terminus, so probably tolerated.
A2C: 0.1 at first, but on reflection higher.

Final scores:
1. **A2C**: 0.5
- a2d = -0.3
| 3 | V5P | 0.1 |
{"Q9R": 0.7, "I12L": -1e-2}
K3E - 0.4, T13P: .5; M1H -> 2
A42G:L50P: 0.7
E7K (pos 7): score 0.9
M1A: \u22120.25
S8T: 0.3x
S9T: inf
Some closing remark about K10R being important."""
    assert parse_predictions(reply) == {
        "A2C": 0.5,
        "A2D": -0.3,
        "V5P": 0.1,
        "Q9R": 0.7,
        "I12L": -0.01,
        "K3E": 0.4,
        "T13P": 0.5,
        "M1H": 2.0,
        "A42G:L50P": 0.7,
        "E7K": 0.9,
        "M1A": -0.25,
    }
    assert TASK.extract_answer("no scores here") is None
    assert TASK.extract_answer("A2C: 0.5\nA2D: 1") == "A2C: 0.5\nA2D: 1"


def test_score_reads_only_the_batch_and_fills_missing_with_the_median() -> None:
    problem = TASK.load(FIXTURES / f"{IF1}.csv")[0]
    mutants, truth = problem.meta["mutants"], problem.meta["scores"]
    lines = [f"{m}: {v}" for m, v in zip(mutants, truth, strict=True)]
    # Five mutants left out, one given twice (the last value counts), one not in the batch.
    reply = "\n".join([f"{mutants[0]}: -100", *lines[:-5], "Z99Z: 1.0"])
    score = TASK.score(reply, problem)
    assert set(score.data["pred"]) == set(mutants[:-5])
    assert score.data["pred"][mutants[0]] == truth[0]
    assert score.data["parsed"] == pytest.approx(12 / 17)
    given = truth[:-5]
    fill = statistics.median(given)
    expected = spearmanr([*given, *[fill] * 5], truth).statistic
    assert score.data["rho"] == pytest.approx(expected)
    assert score.value == pytest.approx((expected + 1) / 2)
    assert score.detail.startswith("Spearman")
    json.dumps(score.data)  # stored with every evaluated item


def test_perfect_and_inverted_rankings() -> None:
    problem = TASK.load(FIXTURES / f"{BLAT}.csv")[0]
    truth = problem.meta["scores"]
    perfect = TASK.score(reply_for(problem, [3 * t + 1 for t in truth]), problem)
    assert (perfect.data["rho"], perfect.value, perfect.correct) == (pytest.approx(1.0), pytest.approx(1.0), True)
    inverted = TASK.score(reply_for(problem, [-t for t in truth]), problem)
    assert (inverted.data["rho"], inverted.value, inverted.correct) == (pytest.approx(-1.0), pytest.approx(0.0), False)


def test_no_scores_and_constant_scores() -> None:
    problem = TASK.load(FIXTURES / f"{BLAT}.csv")[0]
    empty = TASK.score("I cannot predict this.", problem)
    assert (empty.correct, empty.value, empty.extracted, empty.data["parsed"]) == (False, 0.0, None, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = TASK.score(reply_for(problem, [0.5] * len(problem.meta["mutants"])), problem)
    assert (flat.data["rho"], flat.value, flat.correct) == (0.0, 0.5, False)


def test_pass_threshold() -> None:
    problem = TASK.load(FIXTURES / f"{IF1}.csv")[0]
    truth = problem.meta["scores"]
    rng = random.Random(3)
    noisy = [t + rng.gauss(0, 0.4) for t in truth]
    rho = spearmanr(noisy, truth).statistic
    assert ProteinTask(pass_rho=rho - 0.01).score(reply_for(problem, noisy), problem).correct
    assert not ProteinTask(pass_rho=rho + 0.01).score(reply_for(problem, noisy), problem).correct


def test_format_answer_is_ranks_in_the_reply_format() -> None:
    for problem in TASK.load(SHIPPED / "train.jsonl")[:3]:
        text = TASK.format_answer(problem)
        values = [float(line.split(": ")[1]) for line in text.splitlines()]
        assert [line.split(": ")[0] for line in text.splitlines()] == problem.meta["mutants"]
        assert (min(values), max(values)) == (0.0, 1.0)
        assert len(set(values)) == len(set(problem.meta["scores"]))
        score = TASK.score(text, problem)
        assert score.correct and score.data["rho"] == pytest.approx(1.0)


# -- the metric -----------------------------------------------------------------------------------------------------


def noisy_items(problems: list[Problem], seed: int = 0) -> list[tuple[Problem, Score]]:
    rng = random.Random(seed)
    return [(p, TASK.score(reply_for(p, [t + rng.gauss(0, 1.0) for t in p.meta["scores"]]), p)) for p in problems]


def test_aggregate_pools_batches_per_assay_and_averages_assays() -> None:
    problems = TASK.load(SHIPPED / "test.jsonl")
    items = noisy_items(problems)
    values = TASK.aggregate(items)
    expected = {}
    for assay in (BLAT, HSP82, IF1):
        predicted = [s.data["pred"][m] for p, s in items if p.meta["assay"] == assay for m in p.meta["mutants"]]
        measured = [t for p, _ in items if p.meta["assay"] == assay for t in p.meta["scores"]]
        assert len(predicted) == 120
        expected[assay] = spearmanr(predicted, measured).statistic
        assert values[f"spearman:{assay}"] == pytest.approx(expected[assay])
    assert values["spearman"] == pytest.approx(sum(expected.values()) / 3)
    assert values["parsed"] == 1.0
    # Pooled, not the mean of per-batch correlations.
    per_batch = sum(s.data["rho"] for _, s in items) / len(items)
    assert values["spearman"] != pytest.approx(per_batch)


def test_aggregate_accepts_resampled_items_and_failed_attempts() -> None:
    problems = TASK.load(SHIPPED / "test.jsonl")
    items = noisy_items(problems, seed=1)
    rng = random.Random(0)
    resampled = [items[rng.randrange(len(items))] for _ in range(len(items))]
    values = TASK.aggregate(resampled)
    assert -1.0 <= values["spearman"] <= 1.0
    # Repeating every item leaves pooled Spearman as it is.
    assert TASK.aggregate(items + items)["spearman"] == pytest.approx(TASK.aggregate(items)["spearman"])
    # A failed attempt (no data) counts as no predictions; one assay alone still gives a number.
    failed = [(p, Score(correct=False, value=0.0, extracted=None)) for p in problems]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TASK.aggregate(failed)["spearman"] == 0.0
        assert TASK.aggregate(failed)["parsed"] == 0.0
        mixed = TASK.aggregate(items[:2] + failed[:2])
    assert set(mixed) == {"spearman", f"spearman:{BLAT}", "parsed"}
    assert mixed["parsed"] == pytest.approx(0.5)
    assert TASK.aggregate([]) == {"spearman": 0.0, "parsed": 0.0}


def test_aggregate_works_from_the_answer_when_meta_is_gone() -> None:
    items = noisy_items(TASK.load(SHIPPED / "test.jsonl"))
    bare = [(Problem(id=p.id, question=p.question, answer=p.answer), s) for p, s in items]
    assert TASK.aggregate(bare) == TASK.aggregate(items)


def test_spearman_is_zero_when_undefined() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
        assert spearman([1.0], [2.0]) == 0.0
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
