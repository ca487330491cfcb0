"""Change notices through PostgreSQL LISTEN/NOTIFY: one listening connection per process.

Writers notify inside their own transaction (`transactional_channel`: the store runs `pg_notify` just before
COMMIT), so a notice is delivered exactly when its change becomes visible, and never for a rolled-back one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

from reelforge.adapters.notify import parse, payloads
from reelforge.ports.notify import EVERYTHING

log = logging.getLogger("reelforge.live")


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


class PostgresChangeFeed:
    name = "postgres"
    crosses_processes = True

    def __init__(self, url: str, *, channel: str = "reelforge_changes", reconnect_s: float = 1.0) -> None:
        if not channel.isidentifier():
            raise ValueError(f"not a PostgreSQL channel name: {channel!r}")
        self.url = _plain(url)
        self.transactional_channel: str | None = channel
        self.channel = channel
        self.reconnect_s = reconnect_s
        self._listeners: list[Callable[[list[str]], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pub: Any = None  # an autocommit connection for publish() outside a transaction
        self.connected = threading.Event()

    def publish(self, keys: Collection[str]) -> None:
        if not keys:
            return
        import psycopg

        try:
            with self._lock:
                if self._pub is None or self._pub.closed:
                    self._pub = psycopg.connect(self.url, autocommit=True)
                for p in payloads(keys):
                    self._pub.execute("SELECT pg_notify(%s, %s)", (self.channel, p))
        except Exception as exc:
            log.warning("NOTIFY failed (%s); streams will find the change by their fallback poll", exc)
            with self._lock:
                self._pub = None

    def listen(self, on_keys: Callable[[list[str]], None]) -> None:
        with self._lock:
            if on_keys not in self._listeners:
                self._listeners.append(on_keys)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="reelforge-live-listen", daemon=True)
                self._thread.start()

    def _deliver(self, keys: list[str]) -> None:
        for fn in list(self._listeners):
            try:
                fn(keys)
            except Exception:
                log.exception("change listener failed")

    def _loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self.connected.set()
                    # Notices sent before this LISTEN (while connecting, or while away) are lost: re-read all.
                    self._deliver([EVERYTHING])
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self._deliver(parse(n.payload))
            except Exception as exc:  # the database restarting: streams go on with their fallback poll
                self.connected.clear()
                log.warning("LISTEN %s lost (%s); reconnecting", self.channel, exc)
                self._stop.wait(self.reconnect_s)

    def close(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout=2.0)
        with self._lock:
            if self._pub is not None:
                try:
                    self._pub.close()
                except Exception:
                    pass
                self._pub = None
            self._listeners.clear()
