"""Worker wake-ups: PostgreSQL LISTEN/NOTIFY; SQLite has none, so its workers poll."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("reelforge.worker")

CHANNEL = "reelforge_jobs"


class JobWaker:
    """Sets `event` whenever a NOTIFY arrives on the jobs channel (PostgreSQL only)."""

    def __init__(self, url: str, event: threading.Event) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self.event = event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reelforge-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.event.set()
            except Exception as exc:  # the database restarting must not kill the worker; polling continues
                log.warning("LISTEN connection lost (%s); retrying", exc)
                self._stop.wait(2.0)
