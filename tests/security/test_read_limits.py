"""Read budgets (per address and per account), RateLimit-* headers, the shared limiter's leases and backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, register
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401
from tests.security.test_limits import assert_problem


@pytest.fixture
def make_client(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Any]]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    opened: list[tuple[Any, Any]] = []

    def build(**overrides: Any) -> Any:
        c = Container(make_settings(tmp_path / str(len(opened)), db_url, **overrides))
        tc = TestClient(create_app(container=c))
        tc.__enter__()
        opened.append((tc, c))
        return tc

    yield build
    for tc, c in opened:
        tc.__exit__(None, None, None)
        c.close()


def test_reads_per_address_have_their_own_budget(make_client: Any) -> None:
    client = make_client(rate_limit={"reads_per_window_ip": 4, "reads_per_window_account": 1000, "window_s": 600})
    assert type(client.app.state.container.ip_read_limiter).__name__ == "SharedRateLimiter"  # the default: database
    user = register(client, "reader@example.com")
    remaining = []
    while not remaining or remaining[-1] > 0:  # (register() may have read already)
        r = user.get("/v1/jobs")
        assert r.status_code == 200 and r.headers["ratelimit-limit"] == "4"
        remaining.append(int(r.headers["ratelimit-remaining"]))
    assert remaining == list(range(remaining[0], -1, -1)) and remaining[0] >= 2
    r = user.get("/v1/jobs")
    body = assert_problem(r, 429, "rate_limited")
    assert "Read limit" in body["detail"] and 1 <= int(r.headers["retry-after"]) <= 600
    assert r.headers["ratelimit-remaining"] == "0" and r.headers["ratelimit-policy"] == "4;w=600"
    # Writes are another budget; the console's pages, probes and signed transfers are not API reads.
    assert user.post("/v1/jobs", json={"kind": "system.noop"}).status_code == 202
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code in (200, 302, 303, 307)


def test_reads_per_account(make_client: Any) -> None:
    client = make_client(rate_limit={"reads_per_window_ip": 1000, "reads_per_window_account": 4, "window_s": 600})
    alice = register(client, "alice@example.com")  # one read: /v1/auth/me
    bob = register(client, "bob@example.com")
    for _ in range(3):
        assert alice.get("/v1/jobs").status_code == 200
    r = alice.get("/v1/credits")
    assert_problem(r, 429, "rate_limited")
    assert "for this account" in r.json()["detail"]
    assert bob.get("/v1/jobs").status_code == 200  # the same address, another account


def test_zero_means_unlimited_reads(make_client: Any) -> None:
    client = make_client(rate_limit={"reads_per_window_ip": 0, "reads_per_window_account": 0})
    user = register(client, "many@example.com")
    for _ in range(30):
        assert user.get("/v1/jobs").status_code == 200


@pytest.mark.parametrize("backend", ["memory", "database"])
def test_both_backends_limit_writes(make_client: Any, backend: str) -> None:
    client = make_client(rate_limit={"backend": backend, "writes_per_window_ip": 3, "window_s": 60})
    limiter = client.app.state.container.ip_limiter
    assert limiter.shared == (backend != "memory")
    for _ in range(3):
        assert client.post("/v1/jobs", json={}).status_code == 401
    assert_problem(client.post("/v1/jobs", json={}), 429, "rate_limited")
    limiter.reset()  # forgets the counts, the shared ones too
    assert client.post("/v1/jobs", json={}).status_code == 401


class CountingCounter:
    """A WindowCounter in a dict, counting its calls (the shared store as the limiter sees it)."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, int], int] = {}
        self.calls = 0

    def add(self, key: str, window_start: int, n: int, expires_at: float) -> int:
        self.calls += 1
        self.totals[(key, window_start)] = self.totals.get((key, window_start), 0) + n
        return self.totals[(key, window_start)]

    def clear(self, prefix: str) -> None:
        self.totals = {k: v for k, v in self.totals.items() if not k[0].startswith(prefix)}

    def close(self) -> None:
        pass


def test_leases_keep_the_hot_path_local_and_never_allow_more_than_the_limit() -> None:
    from reelforge.services.limits import SharedRateLimiter

    store = CountingCounter()
    a = SharedRateLimiter(store, 1000, 300, name="r:ip", lease_divisor=50)
    b = SharedRateLimiter(store, 1000, 300, name="r:ip", lease_divisor=50)
    now = 3000.0
    allowed = 0
    for i in range(1200):
        allowed += (a if i % 3 else b).take("1.2.3.4", now).allowed
    assert allowed <= 1000 and allowed >= 1000 - 20  # at most one unspent share (20) lost
    assert store.calls <= 1000 // 20 + 2  # one shared call per 20 requests, then none: the window is spent
    refused = a.take("1.2.3.4", now)
    assert not refused.allowed and refused.retry_after == 300
    calls = store.calls
    for _ in range(100):  # a spent window is refused from memory
        assert not b.take("1.2.3.4", now + 10).allowed
    assert store.calls == calls
    # The next window starts afresh; try_local never does I/O.
    assert a.try_local("1.2.3.4", now + 300) is None
    assert a.take("1.2.3.4", now + 300).allowed


def test_a_store_that_fails_lets_requests_through() -> None:
    from reelforge.services.limits import SharedRateLimiter

    class Down(CountingCounter):
        def add(self, key: str, window_start: int, n: int, expires_at: float) -> int:
            raise ConnectionError("down")

    limiter = SharedRateLimiter(Down(), 1, 60, name="w:ip")
    assert all(limiter.take("k").allowed for _ in range(3))
