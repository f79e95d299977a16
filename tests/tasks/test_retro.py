"""RetroTask: reply parsing, RDKit exact match of reactant sets on real USPTO-50k records, top-k metrics, and the
error when RDKit is missing. Only the tests that parse SMILES need RDKit; the rest run without it."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path

import pytest

import flexlearn.tasks
from flexlearn.errors import ConfigError, InputError
from flexlearn.tasks import MetricTask, Problem, Score, Task, get_task
from flexlearn.tasks import retro as retro_module
from flexlearn.tasks.retro import extract_candidates, topk_metrics

FIXTURES = Path(__file__).parent / "fixtures"
FULL_SAMPLE = FIXTURES / "uspto50k_test_sample.jsonl"
FLEX_SAMPLE = FIXTURES / "flex_uspto_test_sample.jsonl"

# Reactants of line 1 of the full test split: an indole and Boc anhydride.
INDOLE = "CC(=O)c1ccc2[nH]ccc2c1"
BOC2O = "CC(C)(C)OC(=O)OC(=O)OC(C)(C)C"


@pytest.fixture(scope="module")
def task() -> retro_module.RetroTask:
    pytest.importorskip("rdkit")
    return retro_module.RetroTask()


@pytest.fixture(scope="module")
def loose() -> retro_module.RetroTask:
    pytest.importorskip("rdkit")
    return retro_module.RetroTask(ignore_stereo=True)


@pytest.fixture(scope="module")
def full(task: retro_module.RetroTask) -> list[Problem]:
    return task.load(FULL_SAMPLE)


def atom_mapped_reactants() -> list[str]:
    """The reactant side of the atom-mapped reactions, in the order of the full split's first lines."""
    with open(FIXTURES / "uspto50k_test_atom_mapped_sample.csv", newline="") as handle:
        return [row["rxn_smiles"].split(">>")[0] for row in csv.DictReader(handle)]


# Reading replies: no RDKit needed.


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (f"The Boc group comes from Boc2O.\nReactants: {INDOLE}.{BOC2O}", [f"{INDOLE}.{BOC2O}"]),
        (f"**Reactants:** `{INDOLE}.{BOC2O}`", [f"{INDOLE}.{BOC2O}"]),
        (f"Final answer: {INDOLE} + {BOC2O}", [f"{INDOLE}.{BOC2O}"]),
        (f"Reactants: {INDOLE}, {BOC2O}.", [f"{INDOLE}.{BOC2O}"]),
        (f"Reactants: {INDOLE} . {BOC2O}", [f"{INDOLE}.{BOC2O}"]),
        ("Reactants: 1. CCO.CC(=O)Cl\n2. CCO.CC(=O)O", ["CCO.CC(=O)Cl", "CCO.CC(=O)O"]),
        (f"Reactants: {INDOLE}.{BOC2O} (Boc protection)", [f"{INDOLE}.{BOC2O}"]),
        (f"Reactants:\n\n{INDOLE}.{BOC2O}\n", [f"{INDOLE}.{BOC2O}"]),
        (f"so \\boxed{{{INDOLE}.{BOC2O}}}", [f"{INDOLE}.{BOC2O}"]),
        (f"Thinking...\n{INDOLE}.{BOC2O}", [f"{INDOLE}.{BOC2O}"]),
        (
            "Reactants:\n1. CCO.CC(=O)Cl\n2) CCO.CC(=O)O\n**3.** CCO\nThese are ranked.",
            ["CCO.CC(=O)Cl", "CCO.CC(=O)O", "CCO"],
        ),
        ("Step 1. think\nHere are my guesses:\n1. CCO.CC(=O)Cl\n2. CCO.CC(=O)O", ["CCO.CC(=O)Cl", "CCO.CC(=O)O"]),
        # The last label wins over an earlier one in the reasoning.
        ("Reactants: CCO\nOn reflection:\nReactants: CCN", ["CCN"]),
        ("I could not work this out.", []),
        ("", []),
    ],
)
def test_reading_candidates(reply: str, expected: list[str]) -> None:
    assert extract_candidates(reply) == expected


def test_candidates_beyond_the_limit_are_ignored() -> None:
    reply = "Reactants:\n" + "\n".join(f"{i}. {'C' * i}O" for i in range(1, 13))
    assert len(extract_candidates(reply)) == 10
    assert extract_candidates(reply, 3) == ["CO", "CCO", "CCCO"]


def ranked(rank: int | None, invalid: bool = False) -> tuple[Problem, Score]:
    """An evaluated item as aggregate sees it."""
    data = {"rank": rank, "invalid": invalid, "candidates": []}
    return Problem(id="p", question="CC", answer="C.C"), Score(rank == 1, float(rank == 1), "x", data=data)


def test_topk_metrics_on_hand_made_scores() -> None:
    items = [ranked(1), ranked(3), ranked(None, invalid=True), ranked(7), ranked(None), ranked(12)]
    # A failed model call is stored with empty data: wrong, not invalid.
    items.append((Problem(id="q", question="CC", answer="C.C"), Score(False, 0.0, None)))
    assert topk_metrics(items) == {
        "top1": 1 / 7,
        "top3": 2 / 7,
        "top5": 2 / 7,
        "top10": 3 / 7,
        "invalid_rate": 1 / 7,
    }
    assert topk_metrics([]) == {"top1": 0.0, "top3": 0.0, "top5": 0.0, "top10": 0.0, "invalid_rate": 0.0}


# Without RDKit: simulated by making `import rdkit` fail, so this runs whether or not RDKit is installed.


def test_without_rdkit_the_module_imports_and_the_task_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "rdkit" or name.startswith("rdkit.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "rdkit", None)  # a None entry makes `import rdkit` raise ImportError
    # Import the module afresh; the original module and the package attribute come back after the test.
    monkeypatch.delitem(sys.modules, "flexlearn.tasks.retro")
    monkeypatch.setattr(flexlearn.tasks, "retro", retro_module)
    fresh = importlib.import_module("flexlearn.tasks.retro")
    assert fresh is not retro_module
    assert fresh.extract_candidates("Reactants: CCO") == ["CCO"]
    with pytest.raises(ConfigError, match=r"pip install 'flexlearn\[chem\]'"):
        fresh.RetroTask()
    with pytest.raises(ConfigError, match=r"task 'retro'.*pip install 'flexlearn\[chem\]'"):
        get_task("retro")


# With RDKit.


def test_is_a_metric_task(task: retro_module.RetroTask) -> None:
    assert isinstance(task, Task)
    assert isinstance(task, MetricTask)
    assert task.metric == "top1"
    assert "Reactants:" in task.answer_format and "1. SMILES" in task.answer_format
    assert isinstance(get_task("retro"), retro_module.RetroTask)


def test_loads_the_full_split_and_the_flex_split(task: retro_module.RetroTask, full: list[Problem]) -> None:
    # Patent numbers repeat in USPTO-50k (lines 5 and 4491 share one), so the row number joins the id.
    assert [p.id for p in full] == [
        "US07928231B2#12452",
        "US20090192322A1#40212",
        "US20070003539A1#33784",
        "US20040162442A1#43532",
        "US20020156081A1#34223",
        "US20070003539A1#13546",
    ]
    assert full[0].question == "CC(=O)c1ccc2c(ccn2C(=O)OC(C)(C)C)c1"
    assert full[0].answer == f"{INDOLE}.{BOC2O}"
    assert full[0].meta == {"id": "US07928231B2", "rxn_class": 5, "mhn_row": 12452}
    assert task.render(full[0]).endswith("Product SMILES: CC(=O)c1ccc2c(ccn2C(=O)OC(C)(C)C)c1")
    flex = task.load(FLEX_SAMPLE)
    assert [p.id for p in flex][:2] == ["flex_uspto_test_sample.jsonl:1", "flex_uspto_test_sample.jsonl:2"]
    assert flex[0].answer == "CCOP(=O)(OCC)c1ccc([N+](=O)[O-])cc1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "CCO", "answer": "CC(=O"}\n', ":1: reactants 'CC(=O': not SMILES"),
        ('{"question": "C1CC", "answer": "CCO"}\n', ":1: product 'C1CC': not SMILES"),
        (
            '{"question": "CCO", "answer": "CC.O", "id": "a"}\n{"question": "CO", "answer": "C.O", "id": "a"}\n',
            ":2: duplicate id",
        ),
        ('{"question": "CCO"}\n', "missing field 'answer'"),
    ],
)
def test_bad_files(task: retro_module.RetroTask, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        task.load(path)


def test_the_reference_scores_right_and_other_reactions_wrong(
    task: retro_module.RetroTask, full: list[Problem]
) -> None:
    for index, item in enumerate(full):
        score = task.score(task.format_answer(item), item)
        assert score.correct and score.value == 1.0, item.id
        assert score.data == {"rank": 1, "invalid": False, "candidates": [item.answer]}
        other = full[(index + 1) % len(full)]
        assert not task.score(task.format_answer(other), item).correct


def test_reactants_in_another_order_score_right(task: retro_module.RetroTask, full: list[Problem]) -> None:
    for item in full:
        swapped = ".".join(reversed(item.answer.split(".")))
        assert task.score(f"Reactants: {swapped}", item).correct, item.id


def test_a_missing_or_extra_reactant_is_wrong(task: retro_module.RetroTask, full: list[Problem]) -> None:
    assert not task.score(f"Reactants: {INDOLE}", full[0]).correct
    assert not task.score(f"Reactants: {INDOLE}.{BOC2O}.CCN(CC)CC", full[0]).correct  # a reagent (Et3N) added
    assert not task.score(f"Reactants: {INDOLE}.{BOC2O}.{BOC2O}", full[0]).correct  # sets are multisets


def test_atom_mapped_reactants_score_right(task: retro_module.RetroTask, full: list[Problem]) -> None:
    mapped = atom_mapped_reactants()
    assert ":1]" in mapped[0]
    for reactants, item in zip(mapped, full, strict=False):
        assert task.score(f"Reactants: {reactants}", item).correct, item.id


def test_a_differently_written_reference_matches_after_canonicalisation(
    task: retro_module.RetroTask, full: list[Problem]
) -> None:
    # FLEX writes this reaction's reactants with @@/@@ where the full split has @/@: the same cis-cyclobutane.
    flex = task.load(FLEX_SAMPLE)[3]
    full_record = next(p for p in full if p.question == flex.question)
    assert flex.answer != full_record.answer
    assert task.score(task.format_answer(flex), full_record).correct


def test_stereochemistry_counts_unless_ignored(
    task: retro_module.RetroTask, loose: retro_module.RetroTask, full: list[Problem]
) -> None:
    # Line 2 has tetrahedral centres (@, @@), line 6 an E double bond (/ /).
    for item in (full[1], full[3]):
        flat = item.answer.replace("@", "").replace("/", "")
        assert flat != item.answer
        assert not task.score(f"Reactants: {flat}", item).correct, item.id
        assert loose.score(f"Reactants: {flat}", item).correct, item.id
        assert loose.score(task.format_answer(item), item).correct, item.id
    # Inverting every centre gives the enantiomer: wrong with stereo, the same without it.
    item = full[1]
    inverted = item.answer.replace("@@", "\0").replace("@", "@@").replace("\0", "@")
    assert not task.score(f"Reactants: {inverted}", item).correct
    assert loose.score(f"Reactants: {inverted}", item).correct


def test_molecules_are_connected_components(task: retro_module.RetroTask) -> None:
    # A salt written as ions is two molecules on either side, in any order; a ring bond across '.' joins pieces.
    assert task.canonical_reactants("[Na+].[OH-].CCBr") == task.canonical_reactants("CCBr.[OH-].[Na+]")
    assert task.canonical_reactants("[Na+].[OH-].CCBr") == ("CCBr", "[Na+]", "[OH-]")
    assert task.canonical_reactants("C1.C1") == ("CC",)
    assert task.canonical_reactants("[CH3:1][CH2:2][OH:3]") == ("CCO",)
    assert task.canonical_reactants("C1=CC=CC=C1") == ("c1ccccc1",)


@pytest.mark.parametrize("answer", ["CC(=O", "C1CC", "C(C)(C)(C)(C)C", "Xx", "acetic anhydride"])
def test_invalid_smiles_are_flagged(task: retro_module.RetroTask, full: list[Problem], answer: str) -> None:
    score = task.score(f"Reactants: {answer}", full[0])
    assert not score.correct and score.value == 0.0
    assert score.data["invalid"] is True and score.data["rank"] is None
    assert "not valid SMILES" in score.detail


def test_no_answer_is_wrong_but_not_invalid(task: retro_module.RetroTask, full: list[Problem]) -> None:
    score = task.score("I am not sure what makes this.", full[0])
    assert (score.correct, score.extracted, score.data["invalid"], score.data["rank"]) == (False, None, False, None)


def test_rdkit_parse_errors_are_not_printed(
    task: retro_module.RetroTask, full: list[Problem], capfd: pytest.CaptureFixture[str]
) -> None:
    task.score("Reactants: C1CC(((", full[0])
    assert capfd.readouterr().err == ""


def test_a_ranked_list_gives_the_rank_of_the_first_right_candidate(
    task: retro_module.RetroTask, full: list[Problem]
) -> None:
    item = full[0]
    reply = f"Reactants:\n1. {INDOLE}.CC(C)(C)OC(=O)Cl\n2. not-smiles\n3. {BOC2O}.{INDOLE}\n4. {INDOLE}.{BOC2O}"
    score = task.score(reply, item)
    assert (score.correct, score.data["rank"], score.data["invalid"]) == (False, 3, False)
    assert score.extracted == f"{INDOLE}.CC(C)(C)OC(=O)Cl"
    assert "candidate 3 matches" in score.detail
    assert task.aggregate([(item, score)]) == {"top1": 0.0, "top3": 1.0, "top5": 1.0, "top10": 1.0, "invalid_rate": 0.0}
    # An invalid first candidate is flagged even when a later one is right.
    score = task.score(f"Reactants:\n1. C1CC\n2. {item.answer}", item)
    assert (score.correct, score.data["rank"], score.data["invalid"]) == (False, 2, True)


def test_aggregate_over_scored_replies(task: retro_module.RetroTask, full: list[Problem]) -> None:
    first, second, third, fourth, fifth, sixth = full
    replies = [
        (first, task.format_answer(first)),  # rank 1
        (second, f"Reactants:\n1. {first.answer}\n2. {second.answer}"),  # rank 2
        (third, f"Reactants:\n1. C1CC\n2. CCO\n3. CCN\n4. CCC\n5. {third.answer}"),  # invalid, rank 5
        (fourth, f"Reactants: {fifth.answer}"),  # wrong
        (fifth, "no idea"),  # no answer
        (sixth, f"Reactants:\n1. {sixth.answer}\n2. CCO"),  # rank 1
    ]
    items = [(item, task.score(reply, item)) for item, reply in replies]
    assert [score.data["rank"] for _, score in items] == [1, 2, 5, None, None, 1]
    values = task.aggregate(items)
    assert values == {"top1": 2 / 6, "top3": 3 / 6, "top5": 4 / 6, "top10": 4 / 6, "invalid_rate": 1 / 6}
    assert values[task.metric] == sum(score.correct for _, score in items) / len(items)
    # Bootstrap resamples repeat items.
    assert task.aggregate(items + items[:1])["top1"] == 3 / 7


def test_scoring_never_raises_on_junk(task: retro_module.RetroTask, full: list[Problem]) -> None:
    long_chain = "C" * (retro_module.MAX_SMILES_CHARS + 1)
    for reply in ("Reactants: " + long_chain, "Reactants: [", "Reactants: .....", "\\boxed{}", "1. \n2. "):
        score = task.score(reply, full[0])
        assert not score.correct
    broken = Problem(id="b", question="CC", answer="C(")
    assert task.score("Reactants: CC", broken).detail == "the reference reactants are not valid SMILES"
