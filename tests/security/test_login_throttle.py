"""Sign-in throttling per e-mail address: exponential backoff kept in the database, capped, cleared by a success."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.domain.types import login_backoff_s
from tests.conftest import UserHandle, make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"


def login(client: Any, email: str, password: str) -> Any:
    return client.post("/v1/auth/token", json={"email": email, "password": password})


def assert_throttled(r: Any) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "login_throttled", r.json()
    retry_after = int(r.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


def key_of(email: str) -> str:
    import hashlib

    return hashlib.sha256(email.encode()).hexdigest()


def unlock(container: Any, email: str) -> None:
    """The wait is over (as if its time had passed): the failures in a row stay counted."""
    with container.store.tx() as tx:
        row = tx.accounts.lock_login_throttle(key_of(email))
        tx.accounts.set_login_throttle(row.key, failures=row.failures, locked_until=0.0)


def test_backoff_policy_grows_and_is_capped() -> None:
    assert [login_backoff_s(n, 5, 1.0, 900.0) for n in range(1, 10)] == [0, 0, 0, 0, 1, 2, 4, 8, 16]
    assert login_backoff_s(15, 5, 1.0, 900.0) == 900.0
    assert login_backoff_s(10**9, 5, 1.0, 900.0) == 900.0


def test_failures_lock_the_address_with_growing_waits(client: Any, container: Any, alice: UserHandle) -> None:
    for _ in range(4):
        assert login(client, alice.email, "wrong password").json()["code"] == "invalid_credentials"
    # The fifth failure in a row is still checked (and refused as wrong); it locks the address.
    assert login(client, alice.email, "wrong password").json()["code"] == "invalid_credentials"
    # Now even the right password waits: nothing about the password is checked while locked.
    first = assert_throttled(login(client, alice.email, alice.password))
    assert first <= 1
    waits = []
    for _ in range(3):
        unlock(container, alice.email)
        assert login(client, alice.email, "wrong password").status_code == 401
        waits.append(assert_throttled(login(client, alice.email, "wrong password")))
    assert waits == [2, 4, 8]
    # Another address is not affected, and the e-mail's case and spaces make no difference.
    assert login(client, "bob@example.com", "whatever pw").json()["code"] == "invalid_credentials"
    assert_throttled(login(client, "  ALICE@example.com ", alice.password))


def test_a_success_clears_the_count(client: Any, alice: UserHandle) -> None:
    for _ in range(4):
        assert login(client, alice.email, "wrong password").status_code == 401
    assert login(client, alice.email, alice.password).status_code == 200
    for _ in range(4):
        assert login(client, alice.email, "wrong password").status_code == 401
    assert login(client, alice.email, alice.password).status_code == 200


def test_the_wait_is_capped(client: Any, container: Any, alice: UserHandle) -> None:
    """However long an attack went on, the owner waits at most auth.login_backoff_max_s."""
    with container.store.tx() as tx:
        tx.accounts.lock_login_throttle(key_of(alice.email))
        tx.accounts.set_login_throttle(key_of(alice.email), failures=10**6, locked_until=0.0)
    assert login(client, alice.email, "wrong password").status_code == 401
    assert container.settings.auth.login_backoff_max_s == 900
    assert 890 <= assert_throttled(login(client, alice.email, alice.password)) <= 900
    unlock(container, alice.email)
    assert login(client, alice.email, alice.password).status_code == 200


def test_unknown_addresses_are_throttled_alike(client: Any, alice: UserHandle) -> None:
    """The answers never tell whether an account has the address."""
    def sequence(email: str) -> list[tuple[int, str]]:
        return [(r.status_code, r.json()["code"]) for r in (login(client, email, "wrong password") for _ in range(6))]

    assert sequence(alice.email) == sequence("ghost@example.com") == [(401, "invalid_credentials")] * 5 + [
        (429, "login_throttled")]


@pytest.fixture
def second_process(settings: Any) -> Iterator[Any]:
    """Another API process on the same database (its own container, limiters and caches)."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    other = Container(settings)
    with TestClient(create_app(container=other)) as tc:
        yield tc
    other.close()


def test_failures_count_across_api_processes(client: Any, second_process: Any, alice: UserHandle) -> None:
    for api in (client, second_process, client, second_process, client):
        assert login(api, alice.email, "wrong password").status_code == 401
    assert_throttled(login(second_process, alice.email, alice.password))
    assert_throttled(login(client, alice.email, alice.password))


@pytest.fixture
def short_window(tmp_path: Path, db_url: str) -> Iterator[tuple[Any, Any]]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url, auth={"login_failure_window_s": 0.5}))
    with TestClient(create_app(container=c)) as tc:
        yield c, tc
    c.close()


def test_failures_are_forgotten_after_the_window(short_window: tuple[Any, Any]) -> None:
    import time

    from reelforge.runtime.worker import Worker

    container, client = short_window
    container.auth.register("carol@example.com", "correct horse battery")
    for _ in range(4):
        assert login(client, "carol@example.com", "wrong password").status_code == 401
    time.sleep(0.6)
    # The count starts again: four more failures do not lock the address.
    for _ in range(4):
        assert login(client, "carol@example.com", "wrong password").status_code == 401
    assert login(client, "carol@example.com", "correct horse battery").status_code == 200
    # The sweeper forgets idle addresses.
    assert login(client, "ghost@example.com", "wrong password").status_code == 401
    time.sleep(0.6)
    assert Worker(container, maintenance=False).sweep()["login_throttles"] == 1
    with container.store.tx() as tx:
        assert tx.accounts.lock_login_throttle(key_of("ghost@example.com")).failures == 0  # a new, empty row
