"""The worker's maintenance pass and the application hooks: registered ticks and per-application services."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from reelforge import errors
from reelforge.applications import Tick
from reelforge.runtime.maintenance import Maintenance
from reelforge.runtime.worker import AppUnavailable, StepServices, Worker

pytestmark = pytest.mark.timeout(30)


class Ops:
    def try_schedule(self, name: str, interval_s: float, runner: str) -> bool:
        return False


class Tx:
    ops = Ops()


class Store:
    @contextmanager
    def tx(self, write: bool = True) -> Iterator[Tx]:
        yield Tx()


class Alarms:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def tick(self, worker_id: str) -> bool:
        self.calls.append(worker_id)
        if self.fail:
            raise RuntimeError("alarms broke")
        return False


def container(ticks: list[Tick] | None = None, *, alarms: Alarms | None = None) -> Any:
    c = SimpleNamespace(
        settings=SimpleNamespace(jobs=SimpleNamespace(lease_s=30.0), outbox_interval_s=3600.0,
                                 sweep_interval_s=3600.0),
        jobs=SimpleNamespace(reap_expired_leases=lambda: 0),
        events=SimpleNamespace(dispatch=lambda: 0),
        mail=SimpleNamespace(dispatch=lambda worker_id: 0),
        store=Store(),
        alarms=alarms or Alarms(),
    )
    if ticks is not None:
        c.ticks = lambda: ticks
    return c


def maintenance(c: Any) -> Maintenance:
    return Maintenance(c, "w-1", stopping=threading.Event(), wake=threading.Event())


def test_registered_ticks_run_with_the_container_and_the_worker_id() -> None:
    seen: list[tuple[str, Any, str]] = []
    c = container([Tick("a.one", lambda c, wid: seen.append(("a.one", c, wid))),
                   Tick("b.two", lambda c, wid: seen.append(("b.two", c, wid)))])
    m = maintenance(c)
    m.run_once()
    m.run_once()
    assert seen == [("a.one", c, "w-1"), ("b.two", c, "w-1")] * 2
    assert c.alarms.calls == ["w-1", "w-1"]


def test_a_failing_tick_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def broken(c: Any, wid: str) -> None:
        raise RuntimeError("tick broke")

    c = container([Tick("first", lambda c, wid: ran.append("first")), Tick("app.broken", broken),
                   Tick("last", lambda c, wid: ran.append("last"))])
    with caplog.at_level(logging.ERROR, logger="reelforge.worker"):
        maintenance(c).run_once()
    assert ran == ["first", "last"]
    assert c.alarms.calls == ["w-1"]  # the core maintenance ran too
    failed = [r for r in caplog.records if "app.broken" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert "tick broke" in str(failed[0].exc_info[1])


def test_failing_core_maintenance_does_not_stop_the_ticks(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []
    c = container([Tick("app.tick", lambda c, wid: ran.append(wid))], alarms=Alarms(fail=True))
    with caplog.at_level(logging.ERROR, logger="reelforge.worker"):
        maintenance(c).run_once()
    assert ran == ["w-1"]
    assert any(r.getMessage() == "maintenance failed" for r in caplog.records)


def test_a_container_without_ticks_runs_only_the_core() -> None:
    c = container()
    m = maintenance(c)
    m.run_once()
    assert m.ticks == [] and c.alarms.calls == ["w-1"]


def test_the_maintenance_thread_runs_ticks_until_stopped() -> None:
    ran = threading.Event()
    c = container([Tick("app.tick", lambda c, wid: ran.set())])
    stopping = threading.Event()
    t = Maintenance(c, "w-1", stopping=stopping, wake=threading.Event()).start()
    assert ran.wait(5)
    stopping.set()
    t.join(5)
    assert not t.is_alive()


def test_tick_is_a_frozen_value() -> None:
    tick = Tick("app.tick", lambda c, wid: None)
    with pytest.raises(AttributeError):
        tick.name = "other"  # type: ignore[misc]


def services(**apps: Any) -> StepServices:
    return StepServices(settings=None, models=None, assets=None, objects=None, store=None, apps=apps)


def test_step_services_give_a_registered_application_service() -> None:
    svc = object()
    assert services(video=svc).app("video") is svc


def test_a_missing_application_raises_a_clear_error() -> None:
    with pytest.raises(LookupError) as caught:
        services(video=object()).app("mobs")
    exc = caught.value
    assert isinstance(exc, AppUnavailable) and isinstance(exc, errors.ReelforgeError)
    assert "'mobs'" in str(exc) and "video" in str(exc)
    assert exc.code == "app_unavailable" and exc.details == {"app": "mobs"}
    with pytest.raises(AppUnavailable, match="registered: none"):
        services().app("mobs")


def _worker_container(**extra: Any) -> Any:
    c = container()
    c.settings.jobs = SimpleNamespace(lease_s=30.0, prefetch=1, prefetch_max_job_s=1.0)
    c.models = c.assets = c.objects = None
    for k, v in extra.items():
        setattr(c, k, v)
    return c


def test_the_worker_fills_step_services_from_the_container() -> None:
    svc = object()
    w = Worker(_worker_container(app_services=lambda: {"video": svc}), maintenance=False)
    try:
        assert w.services.app("video") is svc
    finally:
        w.executor.shutdown(wait=False)
    bare = Worker(_worker_container(), maintenance=False)
    try:
        assert dict(bare.services.apps) == {}
    finally:
        bare.executor.shutdown(wait=False)
