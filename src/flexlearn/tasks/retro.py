"""Single-step retrosynthesis (USPTO-50k): given a product SMILES, name the reactants. Needs RDKit, an optional
dependency: `pip install 'flexlearn[chem]'`. This module imports without it; creating `RetroTask` does not.

Data. JSONL with "question" (the product SMILES) and "answer" (the reactant SMILES joined by '.'), as in FLEX's
`data/uspto50k/*.jsonl` and the full standard split (`train/valid/test.jsonl`, which add "id", "rxn_class" and
"mhn_row"). In the full split "id" is a patent number that several reactions share, so a problem's id is
"<id>#<mhn_row>" when the record has both, "<id>" when it has only an id, and "<file name>:<line>" otherwise.
Every field but "question" and "answer" (the original "id" included) stays in `Problem.meta`.
Reagents, solvents and catalysts are not part of USPTO-50k answers, so listing them makes an answer wrong.

Reply format. The reply ends with the answer, either one reactant set on a final line::

    Reactants: CC(=O)Cl.OCC

or a ranked list of up to `max_candidates` reactant sets, best first, one per line, after the label::

    Reactants:
    1. CC(=O)Cl.OCC
    2. CC(=O)O.OCC

`extract_candidates` reads, in order of preference: the line after the last "Reactants:" (or "Final answer:")
label, or the numbered lines under it when the label ends its line; else the last `\\boxed{}`; else a numbered
list that ends the reply; else the last line when it is a single word. In each candidate, Markdown and code
marks are dropped, " + ", " . " and commas between molecules count as '.', and the first word is taken
("CCO (ethanol)" -> "CCO"). Candidates after the `max_candidates`-th are ignored.

Scoring. Both sides are parsed with RDKit; atom-map numbers are removed (an atom-mapped answer is as good as a
plain one) and each molecule is written as canonical SMILES. The reactant sets are then compared as multisets of
molecules, order-free. Molecules are RDKit's connected components, not the '.'-separated pieces of the text, so
a salt written as ions ("[Na+].[OH-]") is two molecules on either side, and a ring-closure digit joining two
pieces ("C1.C1", legal SMILES) is one. Nothing is standardised further: "[Na]Cl" and "[Na+].[Cl-]" differ.

Stereochemistry is kept by default, as in the literature's (and FLEX's) exact match on canonical isomeric SMILES:
an answer without the reference's @/@@ or / \\ is wrong. `RetroTask(ignore_stereo=True)` drops stereo on both
sides first (isotopes are kept), which forgives a missing or wrong stereo centre.

`Score.correct` is a top-1 match. `Score.data` holds "rank" (1-based position of the first right candidate, or
None), "invalid" (the first candidate is not a SMILES that RDKit can parse) and "candidates" (what was read).
A reply with no answer at all is not counted as invalid, only as wrong. `aggregate` turns these into top-1/3/5/10
accuracy and the invalid rate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from flexlearn.errors import ConfigError, InputError
from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.common import last_boxed, strip_markup, strip_math_delimiters

# The loader's record reader and field check are used for their line numbers: USPTO-50k ids repeat, so the
# public `load_problems` (which rejects repeated ids) does not fit.
from flexlearn.tasks.loader import field_text, read_records

INSTALL_HINT = "pip install 'flexlearn[chem]'"

# Longer "SMILES" are a runaway reply, not a molecule; USPTO-50k's longest reactant sets are a few hundred characters.
MAX_SMILES_CHARS = 2000

_TOP_K = (1, 3, 5, 10)

_LABEL_LINE = re.compile(
    r"^[\s*_`#>]*(?:reactants?(?:\s+smiles)?|final\s+answer)[\s*_`]*[:：](?P<rest>.*)$", re.IGNORECASE
)
_NUMBERED_LINE = re.compile(r"^[\s*_`]*(?P<number>\d{1,3})[*_`]*[.)][*_`]*\s+(?P<rest>\S.*)$")
# Separators models put between molecules instead of '.': " + " (never inside SMILES, where '+' is a charge within
# brackets, next to no space), " . " and commas (never in SMILES at all).
_SPACED_SEPARATOR = re.compile(r"\s+[+.]\s+")
_COMMA = re.compile(r"\s*,\s*")


def _load_rdkit() -> ModuleType:
    """RDKit's `Chem` module, with its console logging switched off. Raises ConfigError when RDKit is missing."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError as exc:
        raise ConfigError(f"the retrosynthesis task needs RDKit, which is not installed: {INSTALL_HINT}") from exc
    # Every unparsable SMILES in a model reply would otherwise print a parse error to stderr. RDKit's logging is
    # process-wide; switching it off once is thread-safe, unlike blocking it around each parse.
    RDLogger.DisableLog("rdApp.*")
    return Chem


class RetroTask:
    """Single-step retrosynthesis scored by exact match of canonical reactant sets (see the module docstring).

    `ignore_stereo` compares without stereochemistry. `max_candidates` is how many ranked reactant sets a reply may
    give (the rest are ignored). Raises ConfigError when RDKit is not installed.
    """

    name = "retro"
    metric = "top1"

    def __init__(self, ignore_stereo: bool = False, max_candidates: int = 10) -> None:
        if max_candidates < 1:
            raise ConfigError(f"max_candidates must be at least 1, got {max_candidates}")
        self._chem = _load_rdkit()
        self.ignore_stereo = ignore_stereo
        self.max_candidates = max_candidates
        self.answer_format = (
            "Give the reactants as SMILES, molecules joined by '.', without reagents, solvents or catalysts. "
            "End your reply with a last line of the form: Reactants: SMILES.SMILES\n"
            f"To propose alternatives (at most {max_candidates}), end instead with a line 'Reactants:' followed by "
            "one reactant set per line, best first, numbered: '1. SMILES.SMILES', '2. SMILES.SMILES', ..."
        )
        # Canonical forms are cached per task: references are scored many times, and so are repeated answers.
        self._canonical = lru_cache(maxsize=65536)(self._canonicalise)

    def load(self, path: str | Path) -> list[Problem]:
        """Read a JSONL file of reactions. Raises InputError naming the file and line on bad input, including a
        duplicate id and a product or reference that RDKit cannot parse."""
        problems: list[Problem] = []
        first_line_of: dict[str, int] = {}
        for line, record in read_records(path):
            problem = self._problem(record, path, line)
            if problem.id in first_line_of:
                raise InputError(
                    f"duplicate id {problem.id!r} (first used on line {first_line_of[problem.id]})",
                    path=str(path),
                    line=line,
                )
            first_line_of[problem.id] = line
            problems.append(problem)
        return problems

    def render(self, problem: Problem) -> str:
        """The product, and what is asked: the reactants of one reaction step that makes it."""
        return (
            "Single-step retrosynthesis: propose the reactants of one reaction step that produces this product.\n"
            f"Product SMILES: {problem.question}"
        )

    def extract_candidates(self, reply: str) -> list[str]:
        """The reactant sets a reply proposes, best first, at most `max_candidates` (see the module docstring)."""
        return extract_candidates(reply, self.max_candidates)

    def extract_answer(self, reply: str) -> str | None:
        """The first (best) reactant set the reply proposes, or None."""
        candidates = self.extract_candidates(reply)
        return candidates[0] if candidates else None

    def score(self, reply: str, problem: Problem) -> Score:
        """1.0 when the first candidate's reactant set equals the reference; `data` holds the rank of the first
        right candidate and whether the first one is invalid SMILES. Never raises."""
        candidates = self.extract_candidates(reply)
        # Stored with each evaluated item, so a runaway "SMILES" is cut to the length that is ever parsed.
        data: dict[str, Any] = {
            "rank": None,
            "invalid": False,
            "candidates": [c[:MAX_SMILES_CHARS] for c in candidates],
        }
        if not candidates:
            return Score(correct=False, value=0.0, extracted=None, detail="no reactants found in the reply", data=data)
        reference = self.canonical_reactants(problem.answer)
        if reference is None:
            return Score(
                correct=False,
                value=0.0,
                extracted=candidates[0],
                detail="the reference reactants are not valid SMILES",
                data=data,
            )
        parsed = [self.canonical_reactants(candidate) for candidate in candidates]
        data["invalid"] = parsed[0] is None
        data["rank"] = next((index for index, found in enumerate(parsed, start=1) if found == reference), None)
        correct = data["rank"] == 1
        if correct:
            detail = "matches the reference reactants"
        elif data["invalid"]:
            detail = "the first candidate is not valid SMILES"
        else:
            detail = "the first candidate differs from the reference reactants"
        if data["rank"] is not None and not correct:
            detail += f"; candidate {data['rank']} matches"
        return Score(correct=correct, value=1.0 if correct else 0.0, extracted=candidates[0], detail=detail, data=data)

    def format_answer(self, problem: Problem) -> str:
        """`Reactants: <reference>`, the way a correct reply ends."""
        return f"Reactants: {problem.answer.strip()}"

    def aggregate(self, items: Sequence[tuple[Problem, Score]]) -> dict[str, float]:
        """Top-1/3/5/10 accuracy and the invalid rate over `items`; see `topk_metrics`."""
        return topk_metrics(items)

    def canonical_reactants(self, smiles: str) -> tuple[str, ...] | None:
        """The molecules of a reactant set as sorted canonical SMILES (atom maps removed; stereo dropped when
        `ignore_stereo`), or None when RDKit cannot parse it."""
        smiles = smiles.strip()
        if not smiles or len(smiles) > MAX_SMILES_CHARS:
            return None
        try:
            return self._canonical(smiles)
        # RDKit raises on rare inputs it parses but cannot write; scoring must not fail on a model's odd answer.
        except Exception:
            return None

    def _canonicalise(self, smiles: str) -> tuple[str, ...] | None:
        """`canonical_reactants` without the cache."""
        chem = self._chem
        mol = chem.MolFromSmiles(smiles)
        if mol is None:
            return None
        mapped = False
        for atom in mol.GetAtoms():
            if atom.GetAtomMapNum():
                atom.SetAtomMapNum(0)
                mapped = True
        if self.ignore_stereo:
            chem.RemoveStereochemistry(mol)
        molecules = []
        for fragment in chem.GetMolFrags(mol, asMols=True):
            written = chem.MolToSmiles(fragment)
            if mapped:
                # Read and written again: atom maps fix explicit hydrogen counts when parsed, so a molecule read
                # with maps can first come out as a different, equally valid string than the same one read without.
                again = chem.MolFromSmiles(written)
                written = chem.MolToSmiles(again) if again is not None else written
            molecules.append(written)
        return tuple(sorted(molecules))

    def _problem(self, record: dict[str, Any], path: str | Path, line: int) -> Problem:
        """One reaction record as a Problem; raises InputError for an unparsable product or reference."""
        _, question = field_text(record, ("question",), path, line)
        _, answer = field_text(record, ("answer",), path, line)
        question, answer = question.strip(), answer.strip()
        # Only parsed here, not canonicalised: scoring does that (and caches it), so loading the 40,008-reaction
        # train split stays a matter of seconds.
        for what, smiles in (("product", question), ("reactants", answer)):
            if len(smiles) > MAX_SMILES_CHARS or self._chem.MolFromSmiles(smiles) is None:
                raise InputError(f"{what} {smiles[:80]!r}: not SMILES that RDKit can parse", path=str(path), line=line)
        meta = {key: value for key, value in record.items() if key not in ("question", "answer")}
        if "id" in record and "mhn_row" in record:
            problem_id = f"{record['id']}#{record['mhn_row']}"
        elif "id" in record:
            problem_id = str(record["id"])
        else:
            problem_id = f"{Path(path).name}:{line}"
        return Problem(id=problem_id, question=question, answer=answer, meta=meta)


def extract_candidates(reply: str, max_candidates: int = 10) -> list[str]:
    """The reactant sets a reply proposes, best first, at most `max_candidates` (see the module docstring).
    Text only: the candidates are not checked to be SMILES. Works without RDKit."""
    return _candidates(reply)[:max_candidates]


def topk_metrics(items: Sequence[tuple[Problem, Score]]) -> dict[str, float]:
    """Set-level numbers: "top1", "top3", "top5", "top10" (the share of items whose first right candidate ranks
    within k) and "invalid_rate" (the share whose first candidate is not valid SMILES), as fractions of `items`;
    0.0 when empty.

    Reads only `Score.data`, so it works without RDKit. A score without "rank" (e.g. an attempt the model call
    failed on) counts as wrong and not invalid.
    """
    ranks = [_rank(score) for _, score in items]
    total = len(items)
    values = {f"top{k}": _fraction(sum(r is not None and r <= k for r in ranks), total) for k in _TOP_K}
    values["invalid_rate"] = _fraction(sum(score.data.get("invalid") is True for _, score in items), total)
    return values


def _candidates(reply: str) -> list[str]:
    """Every reactant set the reply proposes, best first, before the `max_candidates` cut."""
    lines = reply.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        match = _LABEL_LINE.match(lines[index])
        if match is None:
            continue
        below = [line for line in lines[index + 1 :] if line.strip()]
        if _NUMBERED_LINE.match(match["rest"]):
            # "Reactants: 1. CCO" with the rest of the list below.
            return _numbered_block([match["rest"], *below])
        rest = _smiles_word(match["rest"])
        if rest:
            return [rest]
        numbered = _numbered_block(below)
        if numbered:
            return numbered
        first = _smiles_word(below[0]) if below else None
        return [first] if first else []
    boxed = last_boxed(reply)
    if boxed is not None:
        word = _smiles_word(boxed)
        return [word] if word else []
    non_empty = [line for line in lines if line.strip()]
    if not non_empty:
        return []
    # A numbered list ending the reply: walk back over its lines to find where it starts.
    start = len(non_empty)
    while start > 0 and _NUMBERED_LINE.match(non_empty[start - 1]):
        start -= 1
    numbered = _numbered_block(non_empty[start:])
    if numbered:
        return numbered
    last = non_empty[-1].strip()
    word = _smiles_word(last) if len(last.split()) == 1 else None
    return [word] if word else []


def _numbered_block(lines: Sequence[str]) -> list[str]:
    """The candidates on the numbered lines at the start of `lines`, in order (the numbers themselves are not
    checked: the list's order is the ranking)."""
    found = []
    for line in lines:
        match = _NUMBERED_LINE.match(line)
        if match is None:
            break
        word = _smiles_word(match["rest"])
        if word:
            found.append(word)
    return found


def _smiles_word(text: str) -> str | None:
    """The SMILES in a piece of answer text: separators between molecules made '.', then the first word without
    Markdown, code marks or sentence punctuation; None when nothing is left."""
    # Bold marks and backticks can sit anywhere ("**CCO** + **CC**"); a single '*' is SMILES (any atom) and stays.
    text = strip_math_delimiters(strip_markup(text.replace("**", "").replace("`", "")))
    text = _COMMA.sub(".", _SPACED_SEPARATOR.sub(".", text)).strip(". ")
    words = text.split()
    if not words:
        return None
    # Trailing '.' ends a sentence; SMILES never end with the dot-disconnection.
    word = strip_markup(words[0]).rstrip(".;:")
    return word or None


def _rank(score: Score) -> int | None:
    """The 1-based rank of the first right candidate recorded in a score, or None."""
    rank = score.data.get("rank")
    # bool is an int, but True is no rank.
    if isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1:
        return rank
    return None


def _fraction(count: int, total: int) -> float:
    """count / total, or 0.0 when there is nothing to count."""
    return count / total if total else 0.0
