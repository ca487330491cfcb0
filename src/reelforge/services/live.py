"""Live streams' wake-ups: one dispatcher per process fans a change feed out to every open stream.

Each stream (SSE or WebSocket, `api/live.py`) subscribes to its job before its first read and then waits on its
subscription between reads. The feed's one listening connection (LISTEN on PostgreSQL, SUBSCRIBE on Redis, or
in-process calls) wakes the subscriptions of the keys it names; N streams cost one connection, not N pollers.
A subscription also wakes after `fallback_poll_s` without a notice, so a lost notice (a reconnect, a writer
whose publish failed, a worker in another process on SQLite) delays a stream by at most that long: the database
is the truth, the notice only says when to look.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reelforge.ports.notify import EVERYTHING, ChangeFeed


class Subscription:
    """One stream's interest in one key, bound to the event loop it was made on."""

    __slots__ = ("_event", "key", "loop", "wakeups")

    def __init__(self, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self.key = key
        self.loop = loop
        self._event = asyncio.Event()
        self.wakeups = 0

    def _wake(self) -> None:
        self.wakeups += 1
        self._event.set()

    async def wait(self, timeout_s: float) -> bool:
        """True when a notice came (possibly before this call), False after `timeout_s` without one."""
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout=max(0.0, timeout_s))
            except TimeoutError:
                return False
        self._event.clear()
        return True


class LiveEvents:
    """The process's dispatcher: subscriptions by key, woken from the feed's thread."""

    def __init__(self, feed: ChangeFeed, *, fallback_poll_s: float) -> None:
        self.feed = feed
        self.fallback_poll_s = fallback_poll_s
        self._subs: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()
        self._listening = False
        self.notices = 0  # notices received (for /metrics-style introspection and the benchmarks)

    @property
    def streams(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def _ensure_listening(self) -> None:
        if not self._listening:
            with self._lock:
                if self._listening:
                    return
                self._listening = True
            self.feed.listen(self.on_keys)

    @contextmanager
    def subscribe(self, key: str) -> Iterator[Subscription]:
        """A subscription for the duration of a stream (call on its event loop)."""
        self._ensure_listening()
        sub = Subscription(key, asyncio.get_running_loop())
        with self._lock:
            self._subs.setdefault(key, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subs.get(key)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subs[key]

    def on_keys(self, keys: list[str]) -> None:
        """The feed's callback (any thread): wake every subscription of these keys, one loop call per loop."""
        self.notices += 1
        with self._lock:
            if EVERYTHING in keys:
                woken = [s for subs in self._subs.values() for s in subs]
            else:
                woken = [s for k in keys for s in self._subs.get(k, ())]
        if not woken:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[Subscription]] = {}
        for s in woken:
            by_loop.setdefault(s.loop, []).append(s)
        for loop, subs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_wake_all, subs)
            except RuntimeError:  # that loop is closed: its streams are gone
                pass

    async def wait(self, key: str, timeout_s: float) -> bool:
        """Wait for one notice about `key` (a long poll's single wait)."""
        with self.subscribe(key) as sub:
            return await sub.wait(timeout_s)

    def close(self) -> None:
        self.feed.close()


def _wake_all(subs: list[Any]) -> None:
    for s in subs:
        s._wake()
