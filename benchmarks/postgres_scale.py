"""A library on PostgreSQL against one in an SQLite file, side by side in one run: flex-mode guidance latency at
scale, and concurrent writers through the updater's write path with every decision verified afterwards. Prints
one JSON object (progress goes to stderr).

    python benchmarks/postgres_scale.py --sizes 100000,1000000            # a throwaway server of its own
    python benchmarks/postgres_scale.py --url postgresql://USER@HOST/DB   # an existing server (schemas in DB)
    python benchmarks/postgres_scale.py --sizes 2000 --writer-seconds 5   # a quick check

**Latency.** Per size, the same synthetic entries (`synthetic.py`) go into an SQLite file (`build_library`: rows
by SQL in one transaction) and from there onto the server with `copy_library`, what `flex library copy` runs
(every row, its event log, then the parents linked; one transaction), followed by `VACUUM ANALYZE` of the new
library's tables, as autovacuum would do within a minute; each step is timed. Then the same queries
(`category_query`, as `retrieval.py` asks them) are asked of both with `select_guidance` and each library's
default retriever (`get_retriever(DEFAULT_RETRIEVER, lib)`: tantivy, its index beside the file, and for the server
library in a cache folder of this host, `$FLEX_INDEX_DIR`, set to the run's temporary folder), and of the server
library with its own lexical search too (`postgres_bm25`: a tsvector ranked by `ts_rank`, the default before the
index), and the updater's neighbour search for the same sample entries; p50/p95 in ms. `first_search_s` includes
building the tantivy index (from the rows, on a server through a read-only connection). A measurement stops after
`--budget-s` seconds (at least 5 calls), since a slow retriever at a million entries takes seconds a call: `n` says
how many were timed.

**Writers.** `--hosts` groups of `--writers-per-host` processes (a "host" is a group with its own working folder,
HOME, TMPDIR and cache folder, so its own copy of the tantivy index of the server library, built before the
writers start, and connections of its own) decide and write at once into one PostgreSQL library of
`--writer-base` synthetic entries, and as many processes on one host into one SQLite file of the same entries.
Each process begins a learn run of its own and repeats, for `--writer-seconds` (or `--writer-decisions` each):
a new candidate from a synthetic category; its neighbours from the default retriever, as the updater reads them;
a decision from a seeded rule standing in for the model (add it, merge it into its nearest neighbour, add a copy
of that neighbour's text, which the library turns into a discard, or discard it); then, in one write transaction,
`Library.apply` and `record_problem`, as `flex learn` applies a problem (without learn's re-check of a decision
gone stale, which would search again and call the model; `apply` keeps the library's invariants either way).
Once that commits, the process appends the decision and what `apply` made of it to its journal. Decisions per
second count committed decisions over the window from the common start to the last writer's end.

Afterwards the library is checked against the journals (`verify`): every reported decision has exactly one
event in the log under its run and problem (none: lost; more: duplicated), of the action reported, and its
problem's done mark; no event of a writer's run is missing from the journals; an added entry is in the
library with the candidate's zone, level and text, a merge's event holds the merged text; every entry the
writers touched equals the snapshot of its last event; no two entries of one zone and level share a text; and
the library holds the base entries plus one per reported add.

The throwaway server is `tests/support/postgres.py`'s: fsync, full_page_writes and synchronous_commit off, the
default shared_buffers; its settings are in the output. The SQLite file runs as the library sets it (WAL,
synchronous NORMAL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from synthetic import SyntheticSpec, _Words, build_library, category_query

from flexlearn.experience import Action, Experience, Level, Provenance, Zone
from flexlearn.library.batch import Change
from flexlearn.library.copy import copy_library
from flexlearn.library.store import Library
from flexlearn.library.text import clean_text
from flexlearn.retrieval import DEFAULT_RETRIEVER, get_retriever, select_guidance

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
K = 5  # LearnConfig.neighbours
_ZONES = list(Zone)
_LEVELS = list(Level)


def log(message: str) -> None:
    print(f"[postgres_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _ms(seconds: Sequence[float]) -> dict[str, Any]:
    times = sorted(seconds)
    if not times:
        return {"n": 0}
    return {
        "n": len(times),
        "p50_ms": round(1000 * statistics.median(times), 3),
        "p95_ms": round(1000 * times[min(len(times) - 1, int(0.95 * len(times)))], 3),
    }


def _latency(calls: Sequence[Callable[[], object]], *, budget_s: float, warm_up: int = 3) -> dict[str, Any]:
    """p50/p95 of `calls` after `warm_up` of them (first touches of indexes and pages are not steady state),
    stopping once `budget_s` is spent (after at least 5)."""
    start = time.perf_counter()
    for call in calls[:warm_up]:
        call()
    warm_s = time.perf_counter() - start
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    for call in calls:
        if len(times) >= 5 and time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    result = _ms(times)
    result["warm_up_ms_each"] = round(1000 * warm_s / max(1, min(warm_up, len(calls))), 3)
    return result


# -- the server ------------------------------------------------------------------------------------------------


class Server:
    """Where the PostgreSQL libraries go: a schema each (`?options=-csearch_path=...`) in one database, of the
    server `url` names or of a throwaway one started here. `close` drops what it made and stops what it started."""

    def __init__(self, url: str | None) -> None:
        self._own: Any = None
        if url is None:
            sys.path.insert(0, str(_ROOT))  # tests.support.postgres
            from tests.support import postgres

            log("starting a throwaway PostgreSQL server (tests/support/postgres.py)")
            self._own = postgres.start()
            url = self._own.new_database("bench")
        self.url = url
        self._schemas: list[str] = []

    def raw(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def new_library(self, name: str) -> str:
        """The URL of a new, empty schema for one library."""
        schema = f"flexbench_{name}_{os.getpid()}"
        with self.raw() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self._schemas.append(schema)
        parts = urllib.parse.urlsplit(self.url)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "options"]
        options = dict(urllib.parse.parse_qsl(parts.query)).get("options", "")
        query.append(("options", f"{options} -csearch_path={schema}".strip()))
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))

    def describe(self) -> dict[str, Any]:
        names = ("server_version", "shared_buffers", "work_mem", "effective_cache_size", "jit", "fsync")
        names += ("synchronous_commit", "full_page_writes", "max_parallel_workers_per_gather", "max_connections")
        with self.raw() as conn:
            out = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}
        out["throwaway"] = self._own is not None
        return out

    def close(self) -> None:
        if self._own is not None:
            log("stopping the throwaway server")
            self._own.stop()
            self._own = None
            return
        with contextlib.suppress(Exception), self.raw() as conn:
            for schema in self._schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self._schemas.clear()


def _schema_of(url: str) -> str:
    options = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)).get("options", "")
    return options.rsplit("search_path=", 1)[1].split()[0] if "search_path=" in options else "public"


def _vacuum_analyze(server: Server, url: str) -> float:
    schema = _schema_of(url)
    start = time.perf_counter()
    with server.raw() as conn:
        for table in ("experiences", "events", "runs", "run_problems", "outcomes", "meta"):
            conn.execute(f'VACUUM ANALYZE "{schema}"."{table}"')
    return time.perf_counter() - start


def _pg_to_library(server: Server, source: Library, name: str) -> tuple[str, dict[str, float]]:
    """A PostgreSQL library holding what `source` holds, by `copy_library` (as `flex library copy` does), then
    vacuumed and analysed; the URL and each step's seconds."""
    url = server.new_library(name)
    start = time.perf_counter()
    with Library.open(url) as dest:
        copy_library(source, dest)
    copy_s = time.perf_counter() - start
    return url, {"copy_s": round(copy_s, 2), "vacuum_analyze_s": round(_vacuum_analyze(server, url), 2)}


# -- latency at scale ------------------------------------------------------------------------------------------


def _sample_entries(path: Path, lib: Library, n: int) -> list[Experience]:
    """About `n` entries spread over the library (every size // n-th by seq), without reading all of it."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        total = db.execute("SELECT max(seq) FROM experiences").fetchone()[0] or 0
        step = max(1, total // max(1, n))
        ids = [r[0] for r in db.execute("SELECT id FROM experiences WHERE seq % ? = 0 ORDER BY seq LIMIT ?", (step, n))]
    found = lib.find_many(ids)
    return [found[i] for i in ids if i in found]


def _matching_rows(server: Server, url: str, texts: Sequence[str]) -> list[int]:
    """How many entries the server's full-text match finds for each query (before zone, level and rank): what
    `ts_rank` has to score for one unfiltered search."""
    from flexlearn.library.search import query_tokens

    schema = _schema_of(url)
    with server.raw() as conn:
        return [
            conn.execute(
                f"SELECT count(*) FROM \"{schema}\".experiences WHERE search @@ to_tsquery('english', %s)",
                (" | ".join(query_tokens(text)),),
            ).fetchone()[0]
            for text in texts
        ]


def bench_size(server: Server, folder: Path, size: int, queries: int, budget_s: float) -> dict[str, Any]:
    spec = SyntheticSpec(size)
    path = folder / f"lib-{size}.flexlib"
    result: dict[str, Any] = {"size": size}
    log(f"{size:,} entries: building the SQLite library")
    start = time.perf_counter()
    build_library(path, spec).close()
    result["sqlite_build_s"] = round(time.perf_counter() - start, 2)
    sqlite_lib = Library.open(path)
    log(f"{size:,} entries: copying it onto the server (copy_library, then VACUUM ANALYZE)")
    url, steps = _pg_to_library(server, sqlite_lib, f"s{size}")
    per_1000 = round(1000 * steps["copy_s"] / size, 3)
    result["postgres_build"] = {"from_the_sqlite_file": steps, "copy_s_per_1000_entries": per_1000}
    pg_lib = Library.open(url)
    try:
        texts = [category_query(spec, c % spec.categories, seed=c) for c in range(queries)]
        entries = _sample_entries(path, sqlite_lib, queries)
        runs = (("sqlite", sqlite_lib, DEFAULT_RETRIEVER), ("postgres", pg_lib, DEFAULT_RETRIEVER))
        for name, lib, retriever_name in (*runs, ("postgres_bm25", pg_lib, "bm25")):
            log(f"{size:,} entries: {name}, guidance and neighbour searches")
            start = time.perf_counter()
            retriever = get_retriever(retriever_name, lib)
            retriever.search("warm up")
            first_s = time.perf_counter() - start
            result[name] = {
                "retriever": type(retriever).__name__,
                "first_search_s": round(first_s, 3),  # tantivy: builds its index here
                "index_used": getattr(retriever, "_index", None) is not None,  # tantivy: not fallen back
                "index_mb": _index_mb(retriever),
                "guidance": _latency(
                    [lambda t=t, r=retriever, lib=lib: select_guidance(r, lib, t) for t in texts], budget_s=budget_s
                ),
                "neighbours": _latency(
                    [lambda e=e, r=retriever: r.neighbours(e, k=K, zone=e.zone, level=e.level) for e in entries],
                    budget_s=budget_s,
                ),
            }
        result["postgres"]["entries_matching_a_query"] = _counts(_matching_rows(server, url, texts[:10]))
    finally:
        pg_lib.close()
        sqlite_lib.close()
    return result


def _index_mb(retriever: object) -> float | None:
    """The size of a tantivy retriever's index folder on disk, MB (None for another retriever)."""
    index = getattr(retriever, "_index", None)
    if index is None:
        return None
    return round(sum(f.stat().st_size for f in index.directory.rglob("*") if f.is_file()) / 1e6, 2)


def _counts(values: Sequence[int]) -> dict[str, Any]:
    return {"n": len(values), "median": statistics.median(values) if values else None, "max": max(values, default=None)}


# -- concurrent writers ----------------------------------------------------------------------------------------


def _decide(rng: np.random.Generator, candidate: Experience, near: list[Experience], marker: str) -> Change:
    """The updater's decision, by a seeded rule: merge into the nearest (30%), add a copy of its text (10%: the
    library turns it into a discard), discard (15%), add (the rest)."""
    roll = rng.random()
    if near and roll < 0.30:
        return Change(
            candidate, Action.MERGE, "bench: merge", target=near[0].id, merged_content=f"{near[0].content} {marker}"
        )
    if near and roll < 0.40:
        return Change(replace(candidate, content=near[0].content), Action.ADD, "bench: add a copy")
    if roll < 0.55:
        return Change(candidate, Action.DISCARD, "bench: discard")
    return Change(candidate, Action.ADD, "bench: add")


def run_writer(config: dict[str, Any]) -> dict[str, Any]:
    """One writer process (or an in-process call, as the test makes): see the module docstring. Returns what it
    did; its journal, one JSON line per committed decision, is at `config["journal"]`."""
    run_id = config["run_id"]
    spec = SyntheticSpec(config["base"])
    words = _Words(spec)
    words.rng = rng = np.random.default_rng([config["seed"], config["index"]])
    lib = Library.open(config["target"], create=False)
    try:
        retriever = get_retriever(DEFAULT_RETRIEVER, lib)
        retriever.search("warm up")
        lib.begin_run(run_id, kind="learn", config={"benchmark": "postgres_scale"})
        start_at = config.get("start_at") or time.time()
        while time.time() < start_at:
            time.sleep(min(0.05, max(0.0, start_at - time.time())))
        started = time.time()
        end_at = started + config["seconds"] if config.get("seconds") else float("inf")
        limit = config.get("decisions") or 0
        search_s, write_s = [], []
        done = 0
        with open(config["journal"], "a", encoding="utf-8") as journal:
            while time.time() < end_at and (not limit or done < limit):
                n = done + 1
                problem_id = f"d{n}"
                marker = f"zmark{config['index']}x{n}"
                category = int(rng.integers(0, spec.categories))
                candidate = Experience(
                    zone=_ZONES[int(rng.integers(0, len(_ZONES)))],
                    level=_LEVELS[int(rng.integers(0, len(_LEVELS)))],
                    title=words.text(category, 3, 2).capitalize(),
                    content=f"{words.text(category, 8, 30)} {marker}",
                    provenance=Provenance(task="synthetic", problem_ids=[problem_id], run_id=run_id),
                )
                t0 = time.perf_counter()
                hits = retriever.neighbours(candidate, k=K, zone=candidate.zone, level=candidate.level)
                near = [h.experience for h in hits]
                t1 = time.perf_counter()
                change = _decide(rng, candidate, near, marker)
                with lib.transaction():
                    applied = lib.apply([change], run_id=run_id, problem_id=problem_id)[0]
                    lib.record_problem(run_id, problem_id, status="solved", trajectory={"asked": str(change.action)})
                t2 = time.perf_counter()
                search_s.append(t1 - t0)
                write_s.append(t2 - t1)
                record = {
                    "run_id": run_id,
                    "problem_id": problem_id,
                    "asked": str(change.action),
                    "action": str(applied.action),
                    "entry_id": applied.entry_id,
                    "zone": str(change.candidate.zone),
                    "level": str(change.candidate.level),
                    "content": clean_text(change.candidate.content),
                    "merged_content": clean_text(change.merged_content) if applied.action == Action.MERGE else None,
                }
                journal.write(json.dumps(record) + "\n")
                journal.flush()
                done = n
        ended = time.time()
        lib.finish_run(run_id)
    finally:
        lib.close()
    return {
        "run_id": run_id,
        "decisions": done,
        "started": started,
        "ended": ended,
        "neighbour_search": _ms(search_s),
        "write_transaction": _ms(write_s),
    }


def read_journals(paths: Sequence[Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        if path.exists():
            records += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return records


def verify(lib: Library, records: Sequence[dict[str, Any]], run_ids: Sequence[str], base: int) -> dict[str, Any]:
    """Check the library against the writers' journals (see the module docstring); every count is 0 and `ok`
    true when nothing was lost, duplicated or changed."""
    events: dict[tuple[str, str | None], list[Any]] = defaultdict(list)
    last: dict[str, Any] = {}  # entry id -> its last writer event
    logged = sorted((ev for run_id in run_ids for ev in lib.events(run_id=run_id)), key=lambda ev: ev.seq)
    for ev in logged:
        events[(ev.run_id, ev.problem_id)].append(ev)
        if ev.experience_id and ev.action in (Action.ADD, Action.MERGE):
            last[ev.experience_id] = ev
    marks = {run_id: lib.problem_status(run_id) for run_id in run_ids}
    reported = {(r["run_id"], r["problem_id"]) for r in records}
    lost = duplicated = wrong_action = missing_marks = added_missing = added_wrong = merged_wrong = 0
    for r in records:
        found = events.get((r["run_id"], r["problem_id"]), [])
        if not found:
            lost += 1
            continue
        duplicated += len(found) - 1
        ev = found[0]
        if str(ev.action) != r["action"]:
            wrong_action += 1
        if r["problem_id"] not in marks.get(r["run_id"], {}):
            missing_marks += 1
        if r["action"] == str(Action.ADD):
            entry = lib.find(r["entry_id"]) if r["entry_id"] else None
            if entry is None:
                added_missing += 1
            elif (
                (str(entry.zone), str(entry.level)) != (r["zone"], r["level"])
                or ev.after is None
                or (ev.after["content"] != r["content"])
            ):
                added_wrong += 1
        elif r["action"] == str(Action.MERGE) and (ev.after is None or ev.after["content"] != r["merged_content"]):
            merged_wrong += 1
    unreported = sum(len(evs) for key, evs in events.items() if key not in reported)
    current = lib.find_many(last)
    not_as_logged = sum(1 for id, ev in last.items() if id not in current or _differs(current[id], ev))
    duplicate_texts = lib._conn.execute(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM experiences GROUP BY zone, level, content"
        " HAVING count(*) > 1) AS twins"
    ).fetchone()[0]
    adds = sum(1 for r in records if r["action"] == str(Action.ADD))
    count = lib.count()
    result = {
        "decisions_reported": len(records),
        "events_logged": sum(len(evs) for evs in events.values()),
        "actions_reported": dict(Counter(r["action"] for r in records)),
        "asked_reported": dict(Counter(r["asked"] for r in records)),
        "lost": lost,
        "duplicated": duplicated,
        "unreported_events": unreported,
        "wrong_action": wrong_action,
        "missing_done_marks": missing_marks,
        "added_entry_missing": added_missing,
        "added_entry_wrong": added_wrong,
        "merge_text_wrong": merged_wrong,
        "entries_not_as_logged": not_as_logged,
        "duplicate_texts": int(duplicate_texts),
        "entries_expected": base + adds,
        "entries_found": count,
    }
    problems = [k for k, v in result.items() if isinstance(v, int) and v and k not in _COUNTS]
    result["ok"] = not problems and count == base + adds
    return result


_COUNTS = {"decisions_reported", "events_logged", "entries_expected", "entries_found"}


def _differs(entry: Experience, ev: Any) -> bool:
    after = Experience.from_dict(ev.after)
    return any(
        getattr(entry, f) != getattr(after, f) for f in ("zone", "level", "title", "content", "examples", "parent_id")
    )


def _writer_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEX_")}
    env.update(HOME=str(home), TMPDIR=str(home), XDG_CACHE_HOME=str(_cache_of(home)), PYTHONUNBUFFERED="1")
    return env


def _cache_of(home: Path) -> Path:
    """A host's cache folder: where its processes keep the tantivy index of a server library."""
    return home / ".cache"


@contextlib.contextmanager
def _index_root(folder: Path) -> Iterator[None]:
    """`$FLEX_INDEX_DIR` set to `folder` in this process for the block (it is read at each index's opening)."""
    before = os.environ.get("FLEX_INDEX_DIR")
    os.environ["FLEX_INDEX_DIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            del os.environ["FLEX_INDEX_DIR"]
        else:
            os.environ["FLEX_INDEX_DIR"] = before


def _build_host_index(target: str | Path, home: Path) -> None:
    """The index of the server library `target` in the cache folder of the host `home`, as a process of that host
    builds it on its first search, before the writers start (as the file's is)."""
    with _index_root(_cache_of(home) / "flexlearn" / "index"), Library.open(target, create=False) as lib:
        get_retriever(DEFAULT_RETRIEVER, lib).search("warm up")


def run_writers(
    target: str | Path,
    folder: Path,
    *,
    hosts: int,
    per_host: int,
    base: int,
    seconds: float,
    decisions: int,
    children: list[subprocess.Popen[str]],
) -> dict[str, Any]:
    """Start `hosts` x `per_host` writer processes on `target`, wait for them, and verify the library. A server
    library's index is built in each host's cache folder first (`_build_host_index`)."""
    homes = [folder / f"host-{h}" for h in range(hosts)]
    for home in homes:
        home.mkdir(parents=True, exist_ok=True)
        if isinstance(target, str):
            _build_host_index(target, home)
    start_at = time.time() + 5.0 + hosts * per_host  # time for every process to import, connect and warm up
    journals, procs = [], []
    for h, home in enumerate(homes):
        for w in range(per_host):
            index = h * per_host + w
            config = {
                "target": str(target),
                "run_id": f"bench-h{h}-w{w}",
                "index": index,
                "seed": 7,
                "base": base,
                "seconds": seconds,
                "decisions": decisions,
                "start_at": start_at,
                "journal": str(home / f"writer-{w}.jsonl"),
            }
            journals.append(Path(config["journal"]))
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--writer-child", json.dumps(config)],
                cwd=home,
                env=_writer_env(home),
                stdout=subprocess.PIPE,
                text=True,
            )
            children.append(proc)
            procs.append((h, proc))
    reports, failed = [], 0
    for _, proc in procs:
        out, _ = proc.communicate()
        if proc.returncode == 0:
            reports.append(json.loads(out.strip().splitlines()[-1]))
        else:
            failed += 1
    records = read_journals(journals)
    with Library.open(target, create=False) as lib:
        checked = verify(lib, records, [f"bench-h{h}-w{w}" for h in range(hosts) for w in range(per_host)], base)
    window = max((r["ended"] for r in reports), default=start_at) - start_at
    total = sum(r["decisions"] for r in reports)
    return {
        "hosts": hosts,
        "processes_per_host": per_host,
        "writers_failed": failed,
        "decisions": total,
        "window_s": round(window, 2),
        "decisions_per_s": round(total / window, 1) if window > 0 else None,
        "late_start_s_max": round(max((r["started"] - start_at for r in reports), default=0.0), 3),
        "per_writer_decisions": [r["decisions"] for r in reports],
        "neighbour_search_p50_ms_per_writer": [r["neighbour_search"].get("p50_ms") for r in reports],
        "write_transaction_p50_ms_per_writer": [r["write_transaction"].get("p50_ms") for r in reports],
        "write_transaction_p95_ms_per_writer": [r["write_transaction"].get("p95_ms") for r in reports],
        "verified": checked,
    }


def bench_writers(server: Server, folder: Path, args: argparse.Namespace, children: list[Any]) -> dict[str, Any]:
    base = folder / "writers-base.flexlib"
    log(f"writers: building a base library of {args.writer_base:,} entries")
    build_library(base, SyntheticSpec(args.writer_base)).close()
    with Library.open(base) as source:
        url, steps = _pg_to_library(server, source, "writers")
        get_retriever(DEFAULT_RETRIEVER, source).search("warm up")  # the file's index, built before the writers
    limit = f"{args.writer_decisions} decisions each" if args.writer_decisions else f"{args.writer_seconds:g} s"
    total = args.hosts * args.writers_per_host
    log(f"writers: {args.hosts} hosts x {args.writers_per_host} processes on PostgreSQL, {limit}")
    pg = run_writers(
        url,
        folder / "pg",
        hosts=args.hosts,
        per_host=args.writers_per_host,
        base=args.writer_base,
        seconds=args.writer_seconds,
        decisions=args.writer_decisions,
        children=children,
    )
    log(f"writers: {total} processes on one SQLite file, {limit}")
    sqlite = run_writers(
        base,
        folder / "sqlite",
        hosts=1,
        per_host=total,
        base=args.writer_base,
        seconds=args.writer_seconds,
        decisions=args.writer_decisions,
        children=children,
    )
    return {"base_entries": args.writer_base, "postgres_base_build": steps, "postgres": pg, "sqlite": sqlite}


# -- main ------------------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated library sizes ('' for none)")
    parser.add_argument("--queries", type=int, default=100, help="guidance queries (and neighbour searches) per size")
    parser.add_argument("--budget-s", type=float, default=120.0, help="at most this long per latency measurement")
    parser.add_argument("--url", help="an existing server's database (default: start a throwaway server)")
    parser.add_argument("--dir", type=Path, help="where to build the SQLite libraries (default: a temporary folder)")
    parser.add_argument("--hosts", type=int, default=2, help="writer groups on PostgreSQL, each its own 'host'")
    parser.add_argument("--writers-per-host", type=int, default=4)
    parser.add_argument("--writer-seconds", type=float, default=60.0, help="how long the writers write")
    parser.add_argument("--writer-decisions", type=int, default=0, help="decisions per writer instead of seconds")
    parser.add_argument("--writer-base", type=int, default=10_000, help="entries in the writers' library to start")
    parser.add_argument("--no-writers", action="store_true", help="measure latency only")
    parser.add_argument("--writer-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.writer_child:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its children itself
        print(json.dumps(run_writer(json.loads(args.writer_child))), flush=True)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result: dict[str, Any] = {"benchmark": "postgres_scale", "machine": _machine()}
    children: list[subprocess.Popen[str]] = []
    server: Server | None = None
    folder = Path(tempfile.mkdtemp(prefix="postgres-scale-", dir=args.dir))
    try:
        with _terminate_on_sigterm():
            server = Server(args.url)
            result["postgres_server"] = server.describe()
            result["default_retriever"] = DEFAULT_RETRIEVER
            # The server libraries' indexes go in the run's folder (this host's cache), never the user's.
            with _index_root(folder / "index-cache"):
                result["latency"] = [bench_size(server, folder, size, args.queries, args.budget_s) for size in sizes]
            if not args.no_writers:
                result["writers"] = bench_writers(server, folder, args, children)
            result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    except KeyboardInterrupt:
        log("interrupted: stopping the writers and the server")
        raise SystemExit(130) from None
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.terminate()
        for proc in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if server is not None:
            server.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
