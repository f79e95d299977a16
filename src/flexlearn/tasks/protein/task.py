"""`ProteinTask`: ProteinGym DMS fitness prediction, one problem per batch of mutants.

A problem keeps its batch in `Problem.meta` ("assay", "wt", "mutants", "scores", and "description" when given) and
the measured scores as a JSON object (mutant -> score) in `Problem.answer`, which is all scoring reads, so a report
rebuilt from stored records scores the same.

Scoring one batch: `Score.data` holds "assay", "pred" (mutant -> score, as parsed, before any filling), "parsed"
(the fraction of the batch given a score) and "rho" (the batch's Spearman, unscored mutants filled as `metric`
describes). `Score.value` is (rho + 1) / 2, so 0.5 is a random ranking; a reply from which no score at all is read
gets 0.0, below any ranking, so a format failure is never mistaken for a guess. `Score.correct` (what the learning
loop and accuracy count) is rho > `pass_rho`, 0.3 by default: about what ProteinGym's simplest baseline, a
site-independent conservation model, reaches on these assays (0.33-0.47), and for 20 mutants about the one-sided
10% significance level of Spearman's rho, so a "correct" batch is one ranked clearly better than chance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flexlearn.errors import ConfigError
from flexlearn.tasks.base import Problem, Score
from flexlearn.tasks.protein.data import Batch, load_batches
from flexlearn.tasks.protein.metric import filled, pooled_spearman, scaled_ranks, spearman
from flexlearn.tasks.protein.prompt import render_batch
from flexlearn.tasks.protein.replies import batch_predictions, parse_predictions


class ProteinTask:
    """ProteinGym DMS fitness prediction, one problem per batch of mutants; headline metric: Spearman per assay,
    averaged over assays. The modules of `flexlearn.tasks.protein` describe the data formats, the prompt, parsing
    and scoring; `docs/protein.md` gives published numbers for context.

    Options: `batch_size` mutants per problem (CSV input only), `max_batches_per_assay` (None = all), `seed` for the
    shuffle that makes batches, `window` residues of wild-type context on each side of a site in the prompt, and
    `pass_rho`, the batch Spearman above which `Score.correct` holds.
    """

    name = "protein"
    metric = "spearman"
    # The fixed scale matters: the headline pools an assay's batches, which only works if every batch is scored
    # on the same scale.
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

    def load(self, path: str | Path) -> list[Problem]:
        """Batches from an assay CSV (with its `.wt.txt`), a directory of them, or a JSONL of batches (see
        `flexlearn.tasks.protein.data`).

        Raises InputError naming the file (and line, where one applies) on bad input.
        """
        batches = load_batches(
            path, batch_size=self.batch_size, max_batches_per_assay=self.max_batches_per_assay, seed=self.seed
        )
        return [self._problem(batch) for batch in batches]

    def _problem(self, batch: Batch) -> Problem:
        """A batch as a Problem: the rendered prompt as its question, the measured scores as JSON for its answer."""
        texts = [m.text for m in batch.mutants]
        meta: dict[str, Any] = {"assay": batch.assay, "wt": batch.wt, "mutants": texts, "scores": list(batch.scores)}
        if batch.description:
            meta["description"] = batch.description
        # Rendered once, at load, and kept as the question: `render` then needs nothing but the problem.
        question = render_batch(batch, self.window)
        answer = json.dumps(dict(zip(texts, batch.scores, strict=True)))
        return Problem(id=batch.id, question=question, answer=answer, meta=meta)

    def render(self, problem: Problem) -> str:
        """The batch as the model sees it: assay, wild type (once), and each mutant with its local context."""
        return problem.question

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
        pred = batch_predictions(reply, mutants)
        parsed = len(pred) / len(mutants) if mutants else 0.0
        data: dict[str, Any] = {"assay": assay, "pred": pred, "parsed": parsed}
        if not pred:
            data["rho"] = 0.0
            return Score(
                correct=False, value=0.0, extracted=None, detail="no mutant scores found in the reply", data=data
            )
        rho = spearman(filled(mutants, pred), truth)
        data["rho"] = rho
        correct = rho > self.pass_rho
        extracted = "; ".join(f"{mutant}: {value:g}" for mutant, value in pred.items())
        detail = f"Spearman {rho:+.3f} over {len(mutants)} mutants ({len(pred)} scored in the reply)"
        value = min(1.0, max(0.0, (rho + 1.0) / 2.0))
        return Score(correct=correct, value=value, extracted=extracted, detail=detail, data=data)

    def critic_reference(self, problem: Problem) -> str | None:
        """None: the reference is every mutant's measured score, which a critic could only pass on (no span check
        can tell a hint about one mutant's rank from the answer). The critic works from the verdict and the
        batch's Spearman instead."""
        return None

    def format_answer(self, problem: Problem) -> str:
        """The measured scores as a correct reply would give them: one `A42G: 0.73` line per mutant, the scores
        turned into ranks scaled to [0, 1] (order kept, ties shared; see `metric.scaled_ranks`)."""
        mutants, truth = _reference(problem)
        return "\n".join(f"{mutant}: {value}" for mutant, value in zip(mutants, scaled_ranks(truth), strict=True))

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
            # A batch with no predictions stays None here and is filled from the whole assay.
            predicted.extend(filled(mutants, pred) if pred else [None] * len(mutants))
            measured.extend(truth)
        per_assay = {
            f"spearman:{assay}": pooled_spearman(predicted, measured) for assay, (predicted, measured) in pooled.items()
        }
        return {
            self.metric: sum(per_assay.values()) / len(per_assay) if per_assay else 0.0,
            **per_assay,
            "parsed": given / total if total else 0.0,
        }


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
