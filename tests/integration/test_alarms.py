"""Alarm rules on a real database: they fire and resolve with `alarm.*` events through the outbox to every
admin (and their webhooks); one runner evaluates per tick; the worker's scheduler runs the tick."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings, register, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.receiver import Receiver, by_type, running_receiver


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    # The tests below evaluate the rules themselves: no API tick in the background (one test turns it on).
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": True, "retry_base_s": 0.05},
                         alarms={"interval_s": 0.2, "evaluate_in_api": False})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def outbox(container: Any, type_: str) -> list[Any]:
    with container.store.tx(write=False) as tx:
        return [e for e in tx.events.events_after(0, limit=1000) if e.type == type_]


def submit_noop(user: UserHandle) -> str:
    r = user.post("/v1/jobs", json={"kind": "system.noop", "input": {}})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_queue_age_fires_and_resolves_to_every_admin(client: Any, container: Any, admin: UserHandle,
                                                     alice: UserHandle, receiver: Receiver) -> None:
    from reelforge.domain.types import Role

    second = container.auth.register("ops@example.com", "another admin pw", role=Role.admin)
    hook = admin.post("/v1/webhooks", json={"url": receiver.url("/alarms"), "event_types": ["alarm.*"]})
    assert hook.status_code == 201, hook.text
    job_id = submit_noop(alice)
    with container.store.tx() as tx:  # due for 11 minutes, no worker: queue age and heartbeat both breach
        tx.jobs.update_job(job_id, run_at=tx.now() - 660, created_at=tx.now() - 660)
        tx.ops.worker_heartbeat("w-old", hostname="h", pid=1, concurrency=1)

    changes = container.alarms.evaluate()
    assert {(c.key, c.event) for c in changes} == {("queue_age", "raised")}  # the worker heartbeat is fresh
    raised = outbox(container, "alarm.raised")
    assert sorted(e.owner_id for e in raised) == sorted([admin.id, second.id])
    assert raised[0].payload["key"] == "queue_age" and raised[0].payload["value"] >= 660
    assert container.alarms.evaluate() == []  # still breaching: no second event
    assert len(outbox(container, "alarm.raised")) == 2

    # The admin's webhook receives it (the same fan-out as job events).
    container.events.fan_out()
    container.events.deliver_due()
    (req,) = receiver.wait_for(by_type("alarm.raised"))
    assert req.path == "/alarms" and req.json()["data"]["rule"] == "queue_age"

    alice.post(f"/v1/jobs/{job_id}/cancel")
    (change,) = container.alarms.evaluate()
    assert (change.key, change.event) == ("queue_age", "resolved")
    resolved = outbox(container, "alarm.resolved")
    assert len(resolved) == 2 and resolved[0].payload["state"] == "ok" and resolved[0].payload["resolved_at"]

    body = admin.get("/v1/admin/alarms").json()
    assert body["active"] == []
    assert [(e["key"], e["event"]) for e in body["recent"]] == [("queue_age", "resolved"), ("queue_age", "raised")]


def test_failure_rate_and_model_errors_from_real_rows(client: Any, container: Any, alice: UserHandle) -> None:
    with container.store.tx() as tx:
        now = tx.now()
        for ok in [True] * 6 + [False] * 4:
            tx.alarms.add_model_invocation(task="image.generate", model="tiny-sd", job_id=None, worker_id="w", ok=ok,
                                           error=None if ok else "RuntimeError", seconds=0.1, load_s=None, unit="images",
                                           units=1.0 if ok else 0.0)
        for _ in range(5):  # cancellations are not adapter errors
            tx.alarms.add_model_invocation(task="image.generate", model="sd15", job_id=None, worker_id="w", ok=False,
                                           error="cancelled", seconds=0.1, load_s=None, unit=None, units=0.0)
    ids = [submit_noop(alice) for _ in range(6)]
    with container.store.tx() as tx:
        for i, job_id in enumerate(ids):
            tx.jobs.update_job(job_id, status="failed" if i == 0 else "succeeded", finished_at=now, started_at=now)

    changes = {c.key: c for c in container.alarms.evaluate()}
    assert set(changes) == {"job_failure_rate", "model_error_rate:image.generate/tiny-sd"}
    with container.store.tx(write=False) as tx:
        model = tx.alarms.alarm("model_error_rate:image.generate/tiny-sd")
        assert model is not None and model.value == 0.4 and model.details["errors"] == 4
        sd15 = tx.alarms.alarm("model_error_rate:image.generate/sd15")
        assert sd15 is None  # only cancellations: no runs that count
        rate = tx.alarms.alarm("job_failure_rate")
        assert rate is not None and rate.state == "alarm" and abs(rate.value - 1 / 6) < 1e-9

    # The window moves on: both resolve.
    with container.store.tx() as tx:
        tx.alarms.prune_observability(tx.now() + 1)
        for job_id in ids:
            tx.jobs.update_job(job_id, finished_at=now - 3600)
    assert {(c.key, c.event) for c in container.alarms.evaluate()} == {
        ("job_failure_rate", "resolved"), ("model_error_rate:image.generate/tiny-sd", "resolved")}


def test_one_runner_per_tick(tmp_path: Path, db_url: str) -> None:
    from reelforge.adapters.db.models import Schedule
    from reelforge.container import Container

    settings = make_settings(tmp_path, db_url, alarms={"interval_s": 60})
    contenders = [Container(settings) for _ in range(4)]
    try:
        for _round in range(2):
            barrier = threading.Barrier(len(contenders))
            won: list[Any] = []

            def contend(c: Any, name: str, barrier: threading.Barrier = barrier, won: list[Any] = won) -> None:
                barrier.wait()
                try:
                    won.append(c.alarms.tick(name))
                except Exception as exc:  # pragma: no cover - shown in the assertion below
                    won.append(repr(exc))

            threads = [threading.Thread(target=contend, args=(c, f"w{i}")) for i, c in enumerate(contenders)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(won, key=str) == [False, False, False, True]
            # Inside the interval nobody wins again.
            assert not any(c.alarms.tick("late") for c in contenders)
            with contenders[0].store.tx() as tx:  # the interval is over
                tx.s.get(Schedule, "alarms").next_run_at = tx.now() - 1
        with contenders[0].store.tx(write=False) as tx:
            assert len(tx.alarms.queue_samples(0)) == 2
    finally:
        for c in contenders:
            c.close()


def test_workers_run_the_tick(client: Any, container: Any, settings: Any) -> None:
    """Two workers (maintenance on) run the alarm tick from their scheduler, one of them per interval."""
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    other = Container(settings)
    workers = [Worker(container, concurrency=1), Worker(other, concurrency=1)]
    started = container.store.now()
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(samples(container)) >= 4, timeout=20)
        elapsed = container.store.now() - started
    finally:
        for w in workers:
            w.stop(grace_s=2)
        other.close()
    # At most one sample per 0.2 s interval (plus the first, due at once); two winners a tick would double it.
    assert len(samples(container)) <= elapsed / 0.2 + 2


def test_the_api_evaluates_alarms_while_no_worker_is_alive(tmp_path: Path, db_url: str) -> None:
    """Workers all dead (one killed: its registration still says running): the API process's own tick raises the
    queue-age alarm, evaluated once per interval across processes as the workers' ticks are."""
    from fastapi.testclient import TestClient
    from sqlalchemy import update

    from reelforge.adapters.db import models as m
    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.domain.types import Role

    settings = make_settings(tmp_path, db_url, alarms={"interval_s": 0.2, "queue_age": {"threshold": 1.0,
                                                                                        "window_s": 0}})
    c = Container(settings)
    try:
        c.auth.register("root@example.com", "admin password 1", role=Role.admin)
        with TestClient(create_app(container=c)) as client:
            alice = register(client, "alice@example.com")
            job_id = submit_noop(alice)
            with c.store.tx() as tx:
                tx.jobs.update_job(job_id, run_at=tx.now() - 5, created_at=tx.now() - 5)
                tx.ops.worker_heartbeat("killed", hostname="h", pid=1, concurrency=1)
                tx.s.execute(update(m.Worker).values(heartbeat_at=tx.now() - 600))

            def raised() -> Any:
                with c.store.tx(write=False) as tx:
                    alarm = tx.alarms.alarm("queue_age")
                return alarm if alarm is not None and alarm.state == "alarm" else None

            alarm = wait_for(raised, timeout=20)
            assert alarm.value >= 5
            with c.store.tx(write=False) as tx:
                (schedule,) = [s for s in tx.s.query(m.Schedule).all() if s.name == "alarms"]
            assert schedule.last_runner.startswith("api:")
        assert len(outbox(c, "alarm.raised")) >= 1
    finally:
        c.close()


def samples(container: Any) -> list[Any]:
    with container.store.tx(write=False) as tx:
        return list(tx.alarms.queue_samples(0))


def test_alarm_routes_for_admins_only(client: Any, container: Any, alice: UserHandle) -> None:
    assert alice.get("/v1/admin/alarms").status_code == 403
    other = register(client, "eve@example.com")
    assert other.get("/v1/admin/alarms").json()["code"] == "admin_only"
