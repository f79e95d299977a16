"""Retrieval quality on labelled XBRL Formula data: recall@5, hit@5 and MRR of the lexical retrievers (bm25,
tantivy), dense and hybrid over the 300 val questions, each retriever's recall@5 against the default's with a
paired bootstrap interval, and guidance latency on a synthetic library. Prints JSON.

    python benchmarks/retrieval_recall.py                       # recall on both sets, latency at 10,000 entries
    python benchmarks/retrieval_recall.py --latency-sizes ""    # recall only
    python benchmarks/retrieval_recall.py --write-labels        # (re)write the label file from the library
    python benchmarks/retrieval_recall.py --library-url postgresql://USER@HOST/DB   # the same on PostgreSQL

With `--library-url` the libraries are PostgreSQL libraries, each in a new schema of the database the URL names
(`?options=-csearch_path=...`; the user needs CREATE there), copied from the files as `flex library copy` does and
dropped at the end: lexical retrieval is then the server's own (`tantivy` and `bm25` both answer with its
`ts_rank` search, so `hybrid` and `hybrid_bm25` are one fusion), dense retrieval the pgvector index in the database
(a server without pgvector falls back to lexical, as `--retriever dense` does, and says so).

Labelled sets (the data is benchmarks/data/finance_formula; a row's `category` is its formula's name):

- `learned`: the library really learned from the first 60 training problems
  (benchmarks/results/efficacy-qwen2.5-coder-1.5b-formula/r1/train60.flexlib, 103 entries). An entry is
  relevant to a val question when one of the training problems it was learned from (its provenance's
  `problem_ids`, `train.jsonl:LINE`) is of the question's formula. Those labels are written down in
  benchmarks/data/finance_formula/retrieval_labels.json (`--write-labels`); this script checks that the library's
  content hash is still the one they were made from, and that they still follow from it. Val questions whose
  formula no entry was learned from have nothing relevant and are left out of the averages (`questions` says how
  many count). The learned entries are titled with their formula's name (flex learn titles lessons with the
  problem's category), as the real library is.
- `problems`: one entry per training problem (500, 10 per formula): a golden case titled "Worked problem" whose
  text is the training question's word problem alone (`word_problem`: no instructions, no formula, the formula's
  names removed), so no entry names its formula. Relevant: the entries of the question's formula.

Queries: `full` is the val question as the actor sees it (it names the formula and states its definition);
`paraphrase` is its word problem alone with the formula's names removed (`paraphrase`), the question as a user
would ask it without knowing which formula applies ("An artisanal soap maker had costs amounting to $75,000 for
goods sold and maintained an average inventory of $15,000. Compute the figure.").

`hybrid_bm25` is the same fusion with FTS5 ("bm25") as its lexical side instead of tantivy (not a registered
retriever: it tells the fusion's share from its lexical side's).

Metrics, over the val questions with at least one relevant entry, one unfiltered search each: recall@5 (share of
the relevant entries in the top 5, averaged; at most 5/|relevant| where more are relevant), hit@5 (a relevant
entry in the top 5) and MRR@10 (1/rank of the first relevant entry in the top 10, 0 when there is none).
Latency: flex-mode guidance (`select_guidance`, six filtered searches) and the updater's neighbour search on the
synthetic library of `benchmarks/retrieval.py`, p50/p95 ms, and the dense index's build time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import numpy as np
from synthetic import SyntheticSpec, build_library, category_query

from flexlearn.experience import Experience, Level, Provenance, Zone
from flexlearn.library.copy import copy_library
from flexlearn.library.store import Library
from flexlearn.retrieval import DEFAULT_RETRIEVER, Retriever, get_retriever, select_guidance, tantivy_retriever
from flexlearn.retrieval import dense as dense_module
from flexlearn.retrieval.dense import DenseRetriever, DenseUnavailableError
from flexlearn.retrieval.hybrid import DEPTH, RRF_K, HybridRetriever
from retrieval import _latency

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "finance_formula"
LIBRARY = HERE / "results" / "efficacy-qwen2.5-coder-1.5b-formula" / "r1" / "train60.flexlib"
LABELS = DATA / "retrieval_labels.json"
K = 5
MRR_DEPTH = 10
RETRIEVERS = ("bm25", "tantivy", "dense", "hybrid")

_WORD_PROBLEM = re.compile(r'Question:\s*"?(?P<text>.*?)"?\.?\s*Answer:\s*$', re.DOTALL)


def load_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def names(category: str) -> list[str]:
    """The names a formula goes by: "Return on Investment (ROI)" is also "Return on Investment" and "ROI"."""
    found = [category]
    match = re.fullmatch(r"(?P<long>.+?)\s*\((?P<short>[^)]+)\)", category)
    if match:
        found += [match["long"], match["short"]]
    return sorted(set(found), key=len, reverse=True)


def word_problem(question: str) -> str:
    """The word problem of a Formula question: the quoted text after "Question:"."""
    match = _WORD_PROBLEM.search(question)
    if match is None:
        raise ValueError(f"no word problem in {question[:80]!r}")
    return match["text"].strip()


def paraphrase(row: dict[str, str]) -> str:
    """The question without its formula: its word problem with every name of the formula taken out."""
    text = word_problem(row["question"])
    for name in names(row["category"]):
        text = re.sub(re.escape(name), "", text, flags=re.IGNORECASE)
    return re.sub(r"\s{2,}", " ", text).strip()


def _formula_of(train: Sequence[dict[str, str]], problem_id: str) -> str | None:
    name, _, line = problem_id.partition(":")
    if name != "train.jsonl" or not line.isdigit() or not 1 <= int(line) <= len(train):
        return None
    return train[int(line) - 1]["category"]


def make_labels(lib: Library, train: Sequence[dict[str, str]], val: Sequence[dict[str, str]]) -> dict[str, object]:
    """The `learned` set's labels: each entry's formulas (from its provenance) and each val question's relevant
    entries."""
    entries = {}
    for exp in lib.list():
        formulas = sorted({f for p in exp.provenance.problem_ids if (f := _formula_of(train, p)) is not None})
        entries[exp.id] = {"title": exp.title, "problem_ids": exp.provenance.problem_ids, "formulas": formulas}
    questions = [
        {
            "problem": f"val.jsonl:{line}",
            "formula": row["category"],
            "relevant": sorted(id for id, e in entries.items() if row["category"] in e["formulas"]),
        }
        for line, row in enumerate(val, start=1)
    ]
    return {
        "about": (
            "Relevance labels for retrieval on XBRL Formula (benchmarks/retrieval_recall.py). An entry of the library "
            "is relevant to a val question when a training problem it was learned from (provenance problem_ids, "
            "train.jsonl:LINE, 1-based) has the question's category (its formula's name)."
        ),
        "library": str(LIBRARY.relative_to(HERE.parent)),
        "library_content_hash": lib.content_hash(),
        "entries": entries,
        "questions": questions,
    }


class Places:
    """Where the benchmark's libraries go: files in `folder`, or, given `url`, a new schema each in the PostgreSQL
    database it names (dropped by `close`). `store` copies a file library there (the file itself without a URL)."""

    def __init__(self, folder: Path, url: str | None) -> None:
        self.folder = folder
        self.url = url
        self._schemas: list[str] = []

    def new(self, name: str) -> str | Path:
        """Where a new, empty library called `name` goes."""
        if self.url is None:
            return self.folder / f"{name}.flexlib"
        import psycopg

        schema = f"flex_recall_{re.sub(r'[^a-z0-9]+', '_', name.lower())}_{os.getpid()}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self._schemas.append(schema)
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.parse_qsl(parts.query)
        if any(key == "options" for key, _ in query):
            sys.exit("--library-url must not set options: the benchmark sets search_path through them")
        query.append(("options", f"-csearch_path={schema}"))
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def store(self, path: Path) -> Library:
        """The library file at `path`, opened where the libraries go: itself, or a copy on the server."""
        if self.url is None:
            return Library.open(path)
        with Library.open(path) as source:
            lib = Library.open(self.new(path.stem))
            copy_library(source, lib)
        return lib

    def describe(self) -> dict[str, object]:
        if self.url is None:
            return {"backend": "sqlite"}
        import psycopg

        from flexlearn.library.backend.postgres import redact

        with psycopg.connect(self.url) as conn:
            server = conn.execute("SHOW server_version").fetchone()[0]
            # What the server offers (the libraries create the extension when first searched densely).
            row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        return {"backend": "postgresql", "url": redact(self.url), "server": server, "pgvector": row and row[0]}

    def close(self) -> None:
        dense_module.close_all()  # their connections first
        if self.url is None or not self._schemas:
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for schema in self._schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self._schemas.clear()


def problems_library(path: str | Path, train: Sequence[dict[str, str]]) -> tuple[Library, dict[str, str]]:
    """The `problems` set: one golden case per training problem, its word problem without the formula's names.
    Returns the library and each entry's formula by id."""
    lib = Library.open(path)
    formula_of = {}
    with lib.transaction():
        for line, row in enumerate(train, start=1):
            exp = Experience(
                zone=Zone.GOLDEN,
                level=Level.CASE,
                title="Worked problem",
                content=paraphrase(row),
                provenance=Provenance(task="formula", problem_ids=[f"train.jsonl:{line}"]),
            )
            formula_of[lib.add(exp, reason="benchmark").id] = row["category"]
    return lib, formula_of


def evaluate(retriever: Retriever, queries: Sequence[str], relevant: Sequence[set[str]]) -> dict[str, object]:
    """The metrics over the questions with a relevant entry; `per_question` holds each one's recall@5 (for the
    paired comparison, dropped from the output)."""
    recalls, hit, rr = [], 0, 0.0
    for query, rel in zip(queries, relevant, strict=True):
        if not rel:
            continue
        ranked = [h.experience.id for h in retriever.search(query, k=max(K, MRR_DEPTH))]
        top = ranked[:K]
        recalls.append(len(rel.intersection(top)) / len(rel))
        hit += any(id in rel for id in top)
        rr += next((1 / rank for rank, id in enumerate(ranked[:MRR_DEPTH], start=1) if id in rel), 0.0)
    n = len(recalls)
    return {
        "questions": n,
        f"recall@{K}": round(sum(recalls) / n, 4),
        f"hit@{K}": round(hit / n, 4),
        f"mrr@{MRR_DEPTH}": round(rr / n, 4),
        "per_question": recalls,
    }


def compare(results: dict[str, dict[str, object]], baseline: str = DEFAULT_RETRIEVER) -> None:
    """Add to each retriever's metrics its recall@5 minus the baseline's, with a paired bootstrap 95% interval
    over the questions (2,000 resamples, seeded); drop the per-question lists."""
    base = np.array(results[baseline]["per_question"])
    rng = np.random.default_rng(0)
    samples = rng.integers(0, len(base), size=(2000, len(base)))
    for name, metrics in results.items():
        diff = np.array(metrics.pop("per_question")) - base
        if name != baseline:
            low, high = np.percentile(diff[samples].mean(axis=1), [2.5, 97.5])
            metrics[f"recall@{K}_vs_{baseline}"] = [round(float(diff.mean()), 4), round(low, 4), round(high, 4)]


def run_queries(found: dict[str, Retriever], texts: Sequence[str], relevant: Sequence[set[str]]) -> dict[str, object]:
    results = {name: evaluate(r, texts, relevant) for name, r in found.items()}
    compare(results)
    return results


def retrievers(lib: Library, rrf_k: int, depth: int) -> dict[str, Retriever]:
    found = {name: get_retriever(name, lib) for name in RETRIEVERS}
    hybrid = found["hybrid"]
    assert isinstance(hybrid, HybridRetriever)
    hybrid.rrf_k, hybrid.depth = rrf_k, depth
    # Not a registered retriever: the fusion with FTS5 as its lexical side, to tell the fusion from its parts.
    found["hybrid_bm25"] = HybridRetriever(found["bm25"], hybrid.dense, rrf_k=rrf_k, depth=depth)
    return found


def recall_sets(places: Places, rrf_k: int, depth: int) -> dict[str, object]:
    train, val = load_rows(DATA / "train.jsonl"), load_rows(DATA / "val.jsonl")
    queries = {"full": [row["question"] for row in val], "paraphrase": [paraphrase(row) for row in val]}
    results: dict[str, object] = {}

    learned_path = places.folder / "train60.flexlib"
    shutil.copyfile(LIBRARY, learned_path)  # the indexes are built beside it, not in the results folder
    with places.store(learned_path) as lib:
        stored = json.loads(LABELS.read_text(encoding="utf-8"))
        made = make_labels(lib, train, val)
        if stored["library_content_hash"] != made["library_content_hash"] or stored["questions"] != made["questions"]:
            sys.exit(f"{LABELS} no longer matches {LIBRARY}: rerun with --write-labels")
        relevant = [set(q["relevant"]) for q in stored["questions"]]
        found = retrievers(lib, rrf_k, depth)
        results["learned"] = {
            "entries": len(stored["entries"]),
            **{q: run_queries(found, texts, relevant) for q, texts in queries.items()},
        }

    lib, formula_of = problems_library(places.new("problems"), train)
    with lib:
        relevant = [{id for id, f in formula_of.items() if f == row["category"]} for row in val]
        found = retrievers(lib, rrf_k, depth)
        results["problems"] = {
            "entries": len(formula_of),
            **{q: run_queries(found, texts, relevant) for q, texts in queries.items()},
        }
    return results


def latency(places: Places, size: int, queries: int) -> dict[str, object]:
    spec = SyntheticSpec(size)
    path = places.folder / f"synthetic-{size}.flexlib"
    build_library(path, spec).close()
    lib = places.store(path)
    texts = [category_query(spec, c % spec.categories, seed=c) for c in range(queries)]
    entries = lib.list()[:: max(1, size // queries)][:queries]
    result: dict[str, object] = {"size": size}
    try:
        start = time.perf_counter()
        DenseRetriever(lib).search("warm up")
        result["dense_index_build_s"] = round(time.perf_counter() - start, 2)
        dense_module.close_all()  # as a later process finds it: written and current
        start = time.perf_counter()
        DenseRetriever(lib).search("warm up")
        result["dense_index_open_ms"] = round(1000 * (time.perf_counter() - start), 1)
    except DenseUnavailableError as e:  # a server without pgvector: "dense" is lexical there
        result["dense_unavailable"] = str(e)
    for name in RETRIEVERS:
        retriever = get_retriever(name, lib)
        calls: list[Callable[[], object]] = [lambda t=t, r=retriever: select_guidance(r, lib, t) for t in texts]
        result[name] = {
            "guidance": _latency(calls),
            "neighbours": _latency([lambda e=e, r=retriever: r.neighbours(e, k=5) for e in entries]),
        }
    lib.close()
    tantivy_retriever._OPEN.clear()
    dense_module.close_all()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-labels", action="store_true", help=f"write {LABELS.name} from the library and stop")
    parser.add_argument("--rrf-k", type=int, default=RRF_K, help="hybrid's reciprocal rank fusion constant")
    parser.add_argument("--depth", type=int, default=DEPTH, help="how deep hybrid searches each list")
    parser.add_argument("--latency-sizes", default="10000", help="synthetic library sizes to time ('' for none)")
    parser.add_argument("--queries", type=int, default=100, help="guidance (and neighbour) searches per size")
    parser.add_argument("--dir", type=Path, help="where to build the libraries (default: a temporary folder)")
    parser.add_argument(
        "--library-url",
        help="a PostgreSQL database (postgresql://...) to measure on instead of files: a new schema per library",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        if args.write_labels:
            path = Path(folder) / "train60.flexlib"
            shutil.copyfile(LIBRARY, path)
            with Library.open(path) as lib:
                labels = make_labels(lib, load_rows(DATA / "train.jsonl"), load_rows(DATA / "val.jsonl"))
            LABELS.write_text(json.dumps(labels, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"wrote {LABELS}")
            return
        places = Places(Path(folder), args.library_url)
        try:
            out: dict[str, object] = {
                "benchmark": "retrieval_recall",
                "date": date.today().isoformat(),
                "libraries": places.describe(),
                "hybrid": {"rrf_k": args.rrf_k, "depth": args.depth},
                "recall": recall_sets(places, args.rrf_k, args.depth),
            }
            sizes = [int(s) for s in args.latency_sizes.split(",") if s.strip()]
            out["latency"] = [latency(places, size, args.queries) for size in sizes]
        finally:
            places.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
