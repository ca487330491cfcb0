"""Many processes, one truth: 2 `reelforge api` and 4 `reelforge worker` processes on one PostgreSQL database and
one S3 server (SeaweedFS), with clients spread over both APIs.

Every job finishes exactly once (one attempt, one JobSucceeded, one stored output object and asset, one ledger
entry of each kind), and a job's events and progress reach clients streaming it from the other API process, over
SSE and WebSocket, woken by the change feed (the fallback poll is set far beyond the test's deadline)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from reelforge.config import Settings
from reelforge.container import Container
from tests.fixtures.databases import PgServer, require_pg
from tests.fixtures.topology import cluster, register
from tests.integration.test_shared_limits import redis_url

JOBS = 24
PROBE = {"kind": "test.live", "input": {"reports": 4, "sleep_s": 0.3}}
FAST = {"kind": "test.live", "input": {"reports": 1, "sleep_s": 0.02}}


def _sse_stream(url: str, headers: dict[str, str], out: list[tuple[str, Any, float]]) -> None:
    with httpx.stream("GET", url, headers=headers, params={"timeout": 60}, timeout=70) as r:
        assert r.status_code == 200, r.read()
        name, data = None, []
        for line in r.iter_lines():
            if line == "":
                if name is not None:
                    out.append((name, json.loads("\n".join(data)) if data else None, time.monotonic()))
                    if name == "end":
                        return
                name, data = None, []
            elif line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())


def _ws_stream(url: str, token: str, out: list[tuple[str, Any, float]]) -> None:
    from websockets.sync.client import connect

    with connect(url, open_timeout=30) as ws:
        ws.send(json.dumps({"token": token}))
        while True:
            msg = json.loads(ws.recv(timeout=60))
            out.append((msg["event"], msg.get("data"), time.monotonic()))
            if msg["event"] in ("end", "timeout"):
                return


def _follow_on(api: str, job_id: str, user: dict[str, Any]) -> tuple[list[Any], list[Any], list[threading.Thread]]:
    sse: list[Any] = []
    ws: list[Any] = []
    threads = [
        threading.Thread(target=_sse_stream, args=(f"{api}/v1/jobs/{job_id}/events", user["headers"], sse)),
        threading.Thread(target=_ws_stream, args=(api.replace("http://", "ws://") + f"/v1/jobs/{job_id}/events/ws",
                                                  user["token"], ws)),
    ]
    for t in threads:
        t.start()
    return sse, ws, threads


def _check_live(messages: list[Any], job_id: str, label: str) -> None:
    names = [m[0] for m in messages]
    assert names and names[-1] == "end", f"{label}: {names}"
    assert messages[-1][1]["status"] == "succeeded", label
    history = [m[1]["type"] for m in messages if m[0] == "history"]
    assert history[0] == "JobQueued" and history[-1] == "JobSucceeded", f"{label}: {history}"
    running = [m[1] for m in messages if m[0] == "progress" and m[1]["status"] == "running" and 0 < m[1]["fraction"] < 1]
    assert running, f"{label}: progress written by a worker process reached the stream: {messages}"
    assert all(m[1]["id"] == job_id for m in messages if m[0] in ("status", "progress", "end")), label


@pytest.fixture
def topology_db(pg_server: PgServer, tmp_path: Path) -> str:
    require_pg(pg_server)
    return pg_server.create_database()


# The Redis variant starts the same six processes again (about a minute on two cores): `-m slow` runs it.
@pytest.mark.parametrize("notifier", ["postgres", pytest.param("redis", marks=pytest.mark.slow)])
def test_two_apis_four_workers_one_truth(notifier: str, topology_db: str, seaweed: Any, tmp_path: Path) -> None:
    extra = {"REELFORGE_LIVE__FALLBACK_POLL_S": "60"}
    if notifier == "redis":
        extra.update({"REELFORGE_LIVE__REDIS_URL": redis_url(),
                      "REELFORGE_LIVE__REDIS_CHANNEL": f"reelforge:topology:{uuid.uuid4().hex[:8]}"})
    s3 = {"backend": "s3", "s3_bucket": f"rf-topo-{uuid.uuid4().hex[:10]}", "s3_endpoint_url": seaweed.endpoint_url,
          "s3_access_key": seaweed.access_key, "s3_secret_key": seaweed.secret_key, "s3_addressing_style": "path"}
    settings = Settings(data_dir=tmp_path / "var", database={"url": topology_db},
                        auth={"jwt_secret": "topology-" + "x" * 40}, storage=s3)
    setup = Container(settings)
    setup.migrate()  # once, before the processes start side by side
    objects = setup.objects
    t0 = time.monotonic()
    with cluster(tmp_path / "cluster", database_url=topology_db, s3=s3, extra=extra) as c:
        print(f"started in {time.monotonic() - t0:.1f} s")
        try:
            a, b = c.apis
            users = [register(a, "ann@example.com"), register(b, "ben@example.com")]
            # The probe: submitted on A, followed on B (SSE and WebSocket), and the other way round.
            probe_ab = httpx.post(f"{a}/v1/jobs", json=PROBE, headers=users[0]["headers"], timeout=30).json()["id"]
            sse_ab, ws_ab, threads = _follow_on(b, probe_ab, users[0])
            probe_ba = httpx.post(f"{b}/v1/jobs", json=PROBE, headers=users[1]["headers"], timeout=30).json()["id"]
            sse_ba, ws_ba, more = _follow_on(a, probe_ba, users[1])
            threads += more
            submitted = [probe_ab, probe_ba]
            owners = {probe_ab: users[0], probe_ba: users[1]}
            for i in range(JOBS):  # spread over both APIs and both users
                api, user = (a, b)[i % 2], users[(i // 2) % 2]
                r = httpx.post(f"{api}/v1/jobs", json=FAST, headers=user["headers"], timeout=30)
                assert r.status_code == 202, r.text
                submitted.append(r.json()["id"])
                owners[submitted[-1]] = user
            print(f"submitted at {time.monotonic() - t0:.1f} s")
            for t in threads:
                t.join(60)
            print(f"streams done at {time.monotonic() - t0:.1f} s")
            assert not any(t.is_alive() for t in threads), "every stream ended"
            _check_live(sse_ab, probe_ab, "SSE on B of a job submitted on A")
            _check_live(ws_ab, probe_ab, "WebSocket on B of a job submitted on A")
            _check_live(sse_ba, probe_ba, "SSE on A of a job submitted on B")
            _check_live(ws_ba, probe_ba, "WebSocket on A of a job submitted on B")
            deadline = time.monotonic() + 60
            pending = set(submitted)
            while pending and time.monotonic() < deadline:
                for n, job_id in enumerate(list(pending)):
                    j = httpx.get(f"{(a, b)[n % 2]}/v1/jobs/{job_id}", headers=owners[job_id]["headers"],
                                  timeout=30).json()
                    if j["status"] in ("succeeded", "failed", "dead", "cancelled"):
                        assert j["status"] == "succeeded", j
                        pending.discard(job_id)
                time.sleep(0.2)
            assert not pending, f"unfinished: {pending}"
            print(f"all done at {time.monotonic() - t0:.1f} s")
        except BaseException:
            print(c.log_tails())
            raise
    _exactly_once(topology_db, submitted, objects, users)
    setup.close()


def _exactly_once(db: str, job_ids: list[str], objects: Any, users: list[dict[str, Any]]) -> None:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT id, status, attempt FROM jobs WHERE id = ANY(%s)", (job_ids,)).fetchall()
        assert len(rows) == len(job_ids)
        assert all(r[1] == "succeeded" and r[2] == 1 for r in rows), rows
        events = Counter(conn.execute("SELECT job_id, type FROM job_events WHERE job_id = ANY(%s) AND type IN "
                                      "('JobStarted', 'JobSucceeded')", (job_ids,)).fetchall())
        assert all(events[(j, t)] == 1 for j in job_ids for t in ("JobStarted", "JobSucceeded")), events
        assets = Counter(r[0] for r in conn.execute("SELECT job_id FROM assets WHERE job_id = ANY(%s)", (job_ids,)))
        assert all(assets[j] == 1 for j in job_ids), f"one output per job: {assets}"
        ledger = Counter(conn.execute("SELECT job_id, kind FROM credit_ledger WHERE job_id = ANY(%s)",
                                      (job_ids,)).fetchall())
        assert ledger and all(n == 1 for n in ledger.values()), f"each credit movement once: {ledger}"
        assert {j for j, _ in ledger} == set(job_ids)
        keys = [r[0] for r in conn.execute("SELECT key FROM assets WHERE job_id = ANY(%s)", (job_ids,))]
    for key in keys:  # the output bytes are on the S3 server, once per job
        assert objects.head(key) is not None, key
    stored = sum(len(list(objects.list(f"{u['id']}/live/"))) for u in users)
    assert stored == len(job_ids), f"{stored} objects for {len(job_ids)} jobs"
