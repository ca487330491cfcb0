"""Alarm rules and state transitions on an in-memory stand-in for the transaction (no database)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from reelforge.config import Settings
from reelforge.services.alarms import AlarmService

NOW = 1_000_000.0


class FakeAlarms:
    """What AlarmService reads and writes through `tx.alarms`, kept on the FakeTx."""

    def __init__(self, tx: FakeTx) -> None:
        self.tx = tx

    def finished_counts(self, since: float) -> dict[str, int]:
        return dict(self.tx.finished)

    def queue_now(self) -> dict[str, float]:
        return dict(self.tx.queue)

    def last_worker_heartbeat(self) -> float | None:
        return self.tx.heartbeat

    def model_invocation_counts(self, since: float) -> list[tuple[str, str, int, int]]:
        return list(self.tx.models)

    def alarms(self, *, state: str | None = None) -> list[SimpleNamespace]:
        return [a for a in self.tx.rows.values() if state is None or a.state == state]

    def alarm(self, key: str) -> SimpleNamespace | None:
        return self.tx.rows.get(key)

    def save_alarm(self, key: str, **values: Any) -> SimpleNamespace:
        row = self.tx.rows.get(key)
        if row is None:
            row = self.tx.rows[key] = SimpleNamespace(key=key, **{"raised_at": None, "resolved_at": None, **values})
        else:
            for k, v in values.items():
                setattr(row, k, v)
        return row

    def add_alarm_history(self, **values: Any) -> None:
        self.tx.history.append(values)


class FakeAccounts:
    def __init__(self, tx: FakeTx) -> None:
        self.tx = tx

    def admin_ids(self) -> list[str]:
        return list(self.tx.admins)


class FakeOutbox(list[tuple[str, dict[str, Any], str | None]]):
    """The events emitted (a list), and the `tx.events` repository that appends to it."""

    def emit(self, type_: str, payload: dict[str, Any], *, owner_id: str | None = None) -> None:
        self.append((type_, payload, owner_id))


class FakeTx:
    def __init__(self) -> None:
        self.finished: dict[str, int] = {}
        self.queue = {"queued": 0.0, "ready": 0.0, "running": 0.0, "oldest_ready_age_s": 0.0}
        self.heartbeat: float | None = NOW
        self.models: list[tuple[str, str, int, int]] = []
        self.rows: dict[str, SimpleNamespace] = {}
        self.history: list[dict[str, Any]] = []
        self.events = FakeOutbox()
        self.admins = ["admin-1", "admin-2"]
        self.alarms = FakeAlarms(self)
        self.accounts = FakeAccounts(self)

    def now(self) -> float:
        return NOW


def service(**alarms: Any) -> AlarmService:
    return AlarmService(store=None, settings=Settings(alarms=alarms))  # type: ignore[arg-type]


def run(svc: AlarmService, tx: FakeTx) -> list[Any]:
    return svc._apply(tx, NOW, svc._observe(tx, NOW, tx.alarms.queue_now()))  # type: ignore[arg-type]


def states(tx: FakeTx) -> dict[str, str]:
    return {k: a.state for k, a in tx.rows.items()}


def test_defaults_match_the_designs() -> None:
    rules = {r["name"]: r for r in service().rules()}
    assert rules["job_failure_rate"]["threshold"] == 0.05 and rules["job_failure_rate"]["window_s"] == 900
    assert rules["queue_age"]["threshold"] == 600
    assert rules["model_error_rate"]["threshold"] == 0.10
    assert all(r["enabled"] for r in rules.values())


def test_quiet_system_is_ok_and_emits_nothing() -> None:
    tx = FakeTx()
    assert run(service(), tx) == []
    assert states(tx) == {"job_failure_rate": "ok", "queue_age": "ok", "worker_heartbeat": "ok"}
    assert tx.events == [] and tx.history == []


def test_job_failure_rate_fires_above_5_percent_and_resolves() -> None:
    svc, tx = service(), FakeTx()
    tx.finished = {"succeeded": 96, "failed": 4, "cancelled": 50}  # 4 %: below
    assert run(svc, tx) == []
    tx.finished = {"succeeded": 94, "failed": 4, "dead": 2}  # 6 %
    (change,) = run(svc, tx)
    assert (change.key, change.event) == ("job_failure_rate", "raised")
    assert tx.rows["job_failure_rate"].value == 0.06 and tx.rows["job_failure_rate"].raised_at == NOW
    assert [(t, owner) for t, _, owner in tx.events] == [("alarm.raised", "admin-1"), ("alarm.raised", "admin-2")]
    assert tx.events[0][1]["rule"] == "job_failure_rate" and tx.events[0][1]["state"] == "alarm"
    # Still breaching: no new event.
    assert run(svc, tx) == [] and len(tx.events) == 2
    tx.finished = {"succeeded": 100}
    (change,) = run(svc, tx)
    assert change.event == "resolved" and tx.rows["job_failure_rate"].resolved_at == NOW
    assert [t for t, _, _ in tx.events[2:]] == ["alarm.resolved", "alarm.resolved"]
    assert [h["event"] for h in tx.history] == ["raised", "resolved"]


def test_failure_rate_needs_min_samples() -> None:
    tx = FakeTx()
    tx.finished = {"failed": 4}
    assert run(service(), tx) == []
    assert tx.rows["job_failure_rate"].value == 1.0 and tx.rows["job_failure_rate"].state == "ok"
    assert run(service(job_failure_rate={"threshold": 0.05, "min_samples": 1}), tx)[0].event == "raised"


def test_queue_age() -> None:
    tx = FakeTx()
    tx.queue.update(queued=3, ready=2, oldest_ready_age_s=601)
    (change,) = run(service(), tx)
    assert change.key == "queue_age" and "601" in change.message
    tx.queue.update(oldest_ready_age_s=10)
    assert run(service(), tx)[0].event == "resolved"


def test_worker_heartbeat_only_while_jobs_are_due() -> None:
    svc, tx = service(worker_heartbeat={"threshold": 60}), FakeTx()
    tx.heartbeat = NOW - 300
    assert run(svc, tx) == []  # nothing due: workers may sleep
    tx.queue.update(queued=1, ready=1)
    (change,) = run(svc, tx)
    assert change.key == "worker_heartbeat" and tx.rows["worker_heartbeat"].value == 300
    tx.heartbeat = None  # every worker stopped
    assert run(svc, tx) == [] and tx.rows["worker_heartbeat"].state == "alarm"
    tx.heartbeat = NOW - 1
    assert run(svc, tx)[0].event == "resolved"


def test_model_error_rate_per_model() -> None:
    svc, tx = service(), FakeTx()
    tx.models = [("image.generate", "sd15", 10, 2), ("image.generate", "tiny-sd", 10, 1), ("embed.text", "x", 3, 3)]
    (change,) = run(svc, tx)  # 20 % > 10 %; 10 % is not above; 3 runs are below min_samples
    assert change.key == "model_error_rate:image.generate/sd15"
    assert tx.rows[change.key].details == {"task": "image.generate", "model": "sd15", "runs": 10, "errors": 2}
    assert tx.rows["model_error_rate:image.generate/tiny-sd"].state == "ok"
    tx.models = []  # the model stopped running: its alarm resolves
    (change,) = run(svc, tx)
    assert change.event == "resolved" and change.key == "model_error_rate:image.generate/sd15"


def test_disabled_rule_resolves_and_is_not_evaluated() -> None:
    tx = FakeTx()
    tx.queue.update(queued=1, ready=1, oldest_ready_age_s=9999)
    run(service(), tx)
    assert tx.rows["queue_age"].state == "alarm"
    off = service(queue_age={"threshold": 600, "enabled": False})
    (change,) = run(off, tx)
    assert change.key == "queue_age" and change.event == "resolved"
    assert run(off, tx) == []


def test_no_admins_means_no_events_but_state_moves() -> None:
    tx = FakeTx()
    tx.admins = []
    tx.queue.update(queued=1, ready=1, oldest_ready_age_s=9999)
    assert run(service(), tx)[0].event == "raised"
    assert tx.events == [] and tx.rows["queue_age"].state == "alarm"
