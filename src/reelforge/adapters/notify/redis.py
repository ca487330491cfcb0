"""Change notices through Redis pub/sub (when a Redis URL is configured): one subscriber connection per process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

from reelforge.adapters.notify import parse, payloads
from reelforge.ports.notify import EVERYTHING

log = logging.getLogger("reelforge.live")


class RedisChangeFeed:
    name = "redis"
    crosses_processes = True
    transactional_channel: str | None = None

    def __init__(self, url: str, *, channel: str = "reelforge:changes", reconnect_s: float = 1.0,
                 client: Any = None) -> None:
        if client is None:
            import redis  # the `redis` extra; imported only when this feed is configured

            client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                          health_check_interval=30)
        self.client = client
        self.channel = channel
        self.reconnect_s = reconnect_s
        self._listeners: list[Callable[[list[str]], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def publish(self, keys: Collection[str]) -> None:
        if not keys:
            return
        try:
            for p in payloads(keys):
                self.client.publish(self.channel, p)
        except Exception as exc:
            log.warning("PUBLISH failed (%s); streams will find the change by their fallback poll", exc)

    def listen(self, on_keys: Callable[[list[str]], None]) -> None:
        with self._lock:
            if on_keys not in self._listeners:
                self._listeners.append(on_keys)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="reelforge-live-redis", daemon=True)
                self._thread.start()

    def _deliver(self, keys: list[str]) -> None:
        for fn in list(self._listeners):
            try:
                fn(keys)
            except Exception:
                log.exception("change listener failed")

    def _loop(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                pubsub.get_message(timeout=1.0)  # the subscribe confirmation: we are listening from here on
                self.connected.set()
                self._deliver([EVERYTHING])  # notices sent before this SUBSCRIBE are lost: re-read all
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        self._deliver(parse(msg["data"]))
            except Exception as exc:
                self.connected.clear()
                log.warning("Redis subscription lost (%s); reconnecting", exc)
                self._stop.wait(self.reconnect_s)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass

    def close(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout=2.0)
        with self._lock:
            self._listeners.clear()
        try:
            self.client.close()
        except Exception:
            pass
