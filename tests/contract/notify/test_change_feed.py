"""The ChangeFeed port (ports/notify.py), one suite over every adapter: in-process, PostgreSQL LISTEN/NOTIFY and
Redis pub/sub. The cross-process feeds are checked with a second instance standing in for another process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.ports.notify import EVERYTHING
from tests.conftest import make_settings
from tests.integration.test_shared_limits import redis_url


class Inbox:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, keys: list[str]) -> None:
        with self.cond:
            self.keys.extend(keys)
            self.cond.notify_all()

    def wait_for(self, wanted: set[str], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not wanted <= set(self.keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True


def _feeds(kind: str, request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """(listener, publisher): two instances, as in two processes (the same one for the in-process feed)."""
    if kind == "local":
        from reelforge.adapters.notify.local import LocalChangeFeed

        feed = LocalChangeFeed()
        return feed, feed
    if kind == "postgres":
        from reelforge.adapters.notify.postgres import PostgresChangeFeed

        url = request.getfixturevalue("pg_database")
        channel = f"rf_test_{uuid.uuid4().hex[:8]}"
        return PostgresChangeFeed(url, channel=channel), PostgresChangeFeed(url, channel=channel)
    from reelforge.adapters.notify.redis import RedisChangeFeed

    url = redis_url()
    channel = f"reelforge:test:{uuid.uuid4().hex[:8]}"
    return RedisChangeFeed(url, channel=channel), RedisChangeFeed(url, channel=channel)


@pytest.fixture(params=["local", "postgres", "redis"])
def feeds(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    if request.param == "postgres":
        from tests.fixtures.databases import require_pg

        require_pg(request.getfixturevalue("pg_server"))
    listener, publisher = _feeds(request.param, request)
    yield listener, publisher
    listener.close()
    if publisher is not listener:
        publisher.close()


def _listening(feed: Any, inbox: Inbox) -> None:
    feed.listen(inbox)
    connected = getattr(feed, "connected", None)
    if connected is not None:
        assert connected.wait(5), "the listener connected"
        assert inbox.wait_for({EVERYTHING}), "a (re)connect wakes every stream"


def test_published_keys_reach_the_listener(feeds: tuple[Any, Any]) -> None:
    listener, publisher = feeds
    inbox = Inbox()
    _listening(listener, inbox)
    publisher.publish({"job-a", "job-b"})
    assert inbox.wait_for({"job-a", "job-b"})
    assert listener.crosses_processes == (publisher is not listener)


def test_many_keys_are_split_into_payloads_that_fit(feeds: tuple[Any, Any]) -> None:
    listener, publisher = feeds
    inbox = Inbox()
    _listening(listener, inbox)
    keys = {f"{uuid.uuid4().hex}{i:06d}" for i in range(1000)}  # ~39 kB: over PostgreSQL's 8000-byte payload
    publisher.publish(keys)
    assert inbox.wait_for(keys)


def test_listen_is_idempotent_and_publish_never_raises(feeds: tuple[Any, Any]) -> None:
    listener, publisher = feeds
    inbox = Inbox()
    _listening(listener, inbox)
    listener.listen(inbox)
    publisher.publish({"once"})
    assert inbox.wait_for({"once"})
    time.sleep(0.2)
    assert inbox.keys.count("once") == 1
    publisher.publish(set())  # nothing to say: no message


def test_publish_to_an_unreachable_server_does_not_raise() -> None:
    from reelforge.adapters.notify.postgres import PostgresChangeFeed
    from reelforge.adapters.notify.redis import RedisChangeFeed

    PostgresChangeFeed("postgresql://nobody@127.0.0.1:1/none").publish({"x"})
    RedisChangeFeed("redis://127.0.0.1:1/0").publish({"x"})


# --- the store announces what a committed transaction changed ----------------------------------------------------
@pytest.fixture
def container(tmp_path: Path, db_url: str) -> Iterator[Any]:
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url))
    c.migrate()
    yield c
    c.close()


def test_a_commit_announces_its_jobs_and_a_rollback_nothing(container: Any) -> None:
    c = container
    inbox = Inbox()
    feed = c.change_feed
    assert feed.name == ("postgres" if c.db.is_postgres else "local")
    _listening(feed, inbox)
    owner = c.auth.register(f"{uuid.uuid4().hex[:8]}@example.com", "correct horse battery")
    with c.store.tx() as tx:
        job = tx.jobs.add_job(owner_id=owner.id, kind="system.noop", input={}, input_hash="h", credits=0, max_attempts=1,
                              priority=0)
    with pytest.raises(RuntimeError), c.store.tx() as tx:
        tx.jobs.add_event(job.id, "RolledBack")
        raise RuntimeError("roll back")
    with c.store.tx() as tx:
        tx.jobs.add_event(job.id, "Committed")
    assert inbox.wait_for({job.id})
    time.sleep(0.3)
    assert inbox.keys.count(job.id) == 1, "one notice, for the committed transaction only"
    with c.store.tx() as tx:
        tx.jobs.update_job(job.id, progress=0.5, progress_message="half")
    assert _count_becomes(inbox, job.id, 2)


def _count_becomes(inbox: Inbox, key: str, n: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if inbox.keys.count(key) >= n:
            return True
        time.sleep(0.02)
    return False
