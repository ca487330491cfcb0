"""Change notices within one process (SQLite): listeners are called on the publishing thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

log = logging.getLogger("reelforge.live")


class LocalChangeFeed:
    """Reaches only this process: writes made by workers in other processes are found by the fallback poll."""

    name = "local"
    crosses_processes = False
    transactional_channel: str | None = None

    def __init__(self) -> None:
        self._listeners: list[Callable[[list[str]], None]] = []
        self._lock = threading.Lock()

    def publish(self, keys: Collection[str]) -> None:
        if not keys:
            return
        batch = list(keys)
        for fn in list(self._listeners):
            try:
                fn(batch)
            except Exception:  # a listener's failure must not fail the write that committed
                log.exception("change listener failed")

    def listen(self, on_keys: Callable[[list[str]], None]) -> None:
        with self._lock:
            if on_keys not in self._listeners:
                self._listeners.append(on_keys)

    def close(self) -> None:
        with self._lock:
            self._listeners.clear()
