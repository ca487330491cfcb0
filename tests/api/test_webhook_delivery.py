"""Webhook delivery under load: the per-account subscription cap, fairness between accounts, a bounded pool of
parallel senders, and the circuit breaker per target. Real local receivers, real databases."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings, wait_for
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.fixtures.receiver import Receiver, by_type

pytestmark = pytest.mark.timeout(120)

PROBLEM = "application/problem+json"


@pytest.fixture
def webhooks() -> dict[str, Any]:
    """Per-test overrides of the webhooks settings section."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, db_url: str, webhooks: dict[str, Any]) -> Any:
    return make_settings(tmp_path, db_url, webhooks={"allow_private_targets": True, "retry_base_s": 0.05,
                                                     "retry_max_s": 0.1, "timeout_s": 5, **webhooks})


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def subscribe(user: UserHandle, url: str) -> dict[str, Any]:
    r = user.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 201, r.text
    return dict(r.json())


def emit(container: Any, user: UserHandle, n: int) -> None:
    """`n` events of the account straight into the outbox (what n finished jobs would write)."""
    with container.store.tx() as tx:
        tx.events.emit_many([("job.succeeded", {"n": i}, user.id, None) for i in range(n)])


def deliveries(container: Any, owner_id: str) -> list[Any]:
    with container.store.tx(write=False) as tx:
        return list(tx.events.deliveries(owner_id=owner_id, limit=10_000))


@pytest.fixture
def dispatcher(container: Any) -> Iterator[None]:
    """The worker's maintenance pass, as often as the test settings ask (fan out, hand out, never wait)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            container.events.dispatch()
            stop.wait(0.05)

    t = threading.Thread(target=loop, name="test-dispatcher", daemon=True)
    t.start()
    yield
    stop.set()
    t.join(10)
    container.events.close()


# --- the subscription cap ----------------------------------------------------------------------------------
@pytest.mark.parametrize("webhooks", [{"max_per_account": 3}])
def test_subscriptions_per_account_are_capped(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    hooks = [subscribe(alice, f"http://127.0.0.1:9/h{i}") for i in range(3)]
    body = assert_problem(alice.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h3"}), 409,
                          "webhook_limit_reached")
    assert body["limit"] == 3
    assert len(alice.get("/v1/webhooks").json()["data"]) == 3
    subscribe(bob, "http://127.0.0.1:9/bob")  # the cap is per account
    assert alice.delete(f"/v1/webhooks/{hooks[0]['id']}").status_code == 204
    subscribe(alice, "http://127.0.0.1:9/again")
    assert_problem(alice.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h4"}), 409, "webhook_limit_reached")


def test_default_cap_is_twenty(client: Any, alice: UserHandle) -> None:
    for i in range(20):
        subscribe(alice, f"http://127.0.0.1:9/h{i}")
    assert_problem(alice.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h20"}), 409, "webhook_limit_reached")


# --- fairness ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("webhooks", [{"max_per_account": 10, "concurrency": 4, "account_concurrency": 2}])
def test_another_accounts_delivery_is_prompt_behind_a_flood(client: Any, container: Any, alice: UserHandle,
                                                            bob: UserHandle, dispatcher: None) -> None:
    with Receiver(delay_s=0.5) as slow, Receiver() as fast:
        for i in range(10):
            subscribe(alice, slow.url(f"/a{i}"))
        emit(container, alice, 30)  # 300 deliveries to a target that takes half a second each
        slow.wait_for(count=2, timeout=20)  # the flood is being sent
        hook = subscribe(bob, fast.url())
        t0 = time.monotonic()
        assert bob.post(f"/v1/webhooks/{hook['id']}/test").status_code == 202
        fast.wait_for(by_type("webhook.test"), timeout=20)
        waited = time.monotonic() - t0
        # One at a time behind the flood this was 300 x 0.5 s; now it waits for the next pass only.
        assert waited < 3.0, f"bob's delivery waited {waited:.1f} s"
        assert slow.max_in_flight <= 2  # alice never held more than her share of the senders
        pending = [d for d in deliveries(container, alice.id) if d.status == "pending"]
        assert len(pending) > 250  # her backlog is still there, draining, not dropped


# --- a bounded pool of parallel senders ----------------------------------------------------------------------
@pytest.mark.parametrize("webhooks", [{"concurrency": 3, "account_concurrency": 8}])
def test_deliveries_go_in_parallel_bounded_by_the_pool(client: Any, container: Any, alice: UserHandle) -> None:
    with Receiver(delay_s=0.3) as receiver:
        subscribe(alice, receiver.url())
        emit(container, alice, 12)
        container.events.fan_out()
        t0 = time.monotonic()
        sent = 0
        while sent < 12:
            n = container.events.deliver_due()  # waits for what it claimed
            assert 0 < n <= 3
            sent += n
        elapsed = time.monotonic() - t0
        assert receiver.max_in_flight == 3
        assert len(receiver.received()) == 12
        assert elapsed < 12 * 0.3 * 0.6, f"12 deliveries took {elapsed:.2f} s"  # ~4 rounds of 0.3 s, not 12
        assert {d.status for d in deliveries(container, alice.id)} == {"delivered"}


@pytest.mark.parametrize("webhooks", [{"concurrency": 6, "account_concurrency": 2}])
def test_one_account_takes_at_most_its_share_of_the_pool(client: Any, container: Any, alice: UserHandle) -> None:
    with Receiver(delay_s=0.2) as receiver:
        subscribe(alice, receiver.url())
        emit(container, alice, 6)
        container.events.fan_out()
        assert container.events.deliver_due() == 2
        while container.events.deliver_due():
            pass
        assert receiver.max_in_flight == 2 and len(receiver.received()) == 6


# --- the circuit breaker -------------------------------------------------------------------------------------
@pytest.mark.parametrize("webhooks", [{"concurrency": 4, "account_concurrency": 1, "breaker_failures": 3,
                                       "breaker_cooldown_s": 1.0, "max_attempts": 50}])
def test_breaker_opens_after_k_failures_and_closes_after_the_cooldown(client: Any, container: Any,
                                                                      alice: UserHandle, bob: UserHandle) -> None:
    events = container.events

    def pass_() -> int:
        time.sleep(0.15)  # past the retry delay, so every pending delivery is due again
        return int(events.deliver_due())

    with Receiver(status=503) as down, Receiver() as healthy:
        subscribe(alice, down.url())
        emit(container, alice, 6)
        events.fan_out()
        assert [pass_() for _ in range(3)] == [1, 1, 1]
        assert len(down.received()) == 3
        # Open: due deliveries to that target are not claimed, not attempted, not failed.
        assert [pass_() for _ in range(3)] == [0, 0, 0]
        assert len(down.received()) == 3
        ds = deliveries(container, alice.id)
        assert {d.status for d in ds} == {"pending"} and sum(d.attempts for d in ds) == 3
        with container.store.tx(write=False) as tx:
            (circuit,) = tx.events.all_circuits()
        assert circuit.host == f"127.0.0.1:{down.port}" and circuit.failures == 3 and circuit.open_until

        # Another target (another account's, on another port) is not held back meanwhile.
        hook = subscribe(bob, healthy.url())
        bob.post(f"/v1/webhooks/{hook['id']}/test")
        events.fan_out()
        assert events.deliver_due() == 1 and len(healthy.received()) == 1

        # After the cool-down one probe goes; it fails, so the breaker opens again.
        time.sleep(1.0)
        assert pass_() == 1 and len(down.received()) == 4
        assert [pass_() for _ in range(2)] == [0, 0]

        # The target recovers: the next probe closes the breaker and the backlog drains.
        down.status = 200
        time.sleep(1.0)
        assert pass_() == 1
        drained = 0
        while drained < 5:
            n = pass_()
            assert n <= 1  # account_concurrency
            drained += n
        ds = deliveries(container, alice.id)
        assert {d.status for d in ds} == {"delivered"} and len(ds) == 6  # nothing lost, nothing failed early
        assert sum(d.attempts for d in ds) == 4 + 6
        assert len(down.received()) == 10
        with container.store.tx(write=False) as tx:
            (circuit,) = [c for c in tx.events.all_circuits() if c.host.endswith(f":{down.port}")]
        assert circuit.failures == 0 and circuit.open_until is None


@pytest.mark.parametrize("webhooks", [{"breaker_failures": 2, "breaker_cooldown_s": 60.0}])
def test_a_target_refusing_one_request_is_not_broken(client: Any, container: Any, alice: UserHandle) -> None:
    # A 404 is the target's answer to that request (another tenant's path on a shared host), not a sign that
    # the host is down: it fails the delivery's attempt but never opens the breaker.
    with Receiver(status=404) as receiver:
        subscribe(alice, receiver.url())
        emit(container, alice, 3)
        container.events.fan_out()
        for _ in range(3):
            container.events.deliver_due()
            time.sleep(0.15)
        wait_for(lambda: len(receiver.received()) >= 6, timeout=10)
        with container.store.tx(write=False) as tx:
            assert all(c.failures == 0 for c in tx.events.all_circuits())


def test_dispatch_during_worker_shutdown_records_every_outcome(client: Any, container: Any,
                                                                alice: UserHandle) -> None:
    # A worker's stop waits for the deliveries its maintenance handed out: none is left claimed and unrecorded.
    from reelforge.runtime.worker import Worker

    with Receiver(delay_s=0.3) as receiver:
        subscribe(alice, receiver.url())
        emit(container, alice, 4)
        w = Worker(container, concurrency=1)
        w.start()
        wait_for(lambda: receiver.in_flight > 0, timeout=20)
        w.stop(grace_s=2)
        recorded = [d for d in deliveries(container, alice.id) if d.attempts]
        assert len(recorded) == len(receiver.received()) >= 1

