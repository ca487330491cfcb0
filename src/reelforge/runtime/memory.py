"""An in-memory :class:`~reelforge.runtime.runner.CheckpointStore` for tests and one-off local runs."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from reelforge.errors import StaleLease


@dataclass(frozen=True)
class HistoryEvent:
    """One recorded history entry."""

    event: str
    path: str | None
    details: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


class InMemoryCheckpointStore:
    """Checkpoints in a dict, history in a list. Thread-safe.

    Values are stored as JSON text and decoded on read, as a database would, so callers never share
    mutable objects with the store. Set ``lease_lost = True`` to make every later write raise
    :class:`StaleLease` (a fenced-off worker).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, str] = {}
        self._events: list[HistoryEvent] = []
        self.lease_lost = False
        self.puts = 0

    def get(self, path: str) -> tuple[bool, Any]:
        """``(found, output)`` for a step path."""
        with self._lock:
            raw = self._data.get(path)
        return (False, None) if raw is None else (True, json.loads(raw))

    def put(self, path: str, output: Any) -> None:
        """Store a step's output (raises StaleLease when ``lease_lost``)."""
        raw = json.dumps(output)
        with self._lock:
            if self.lease_lost:
                raise StaleLease(f"lease lost; refusing checkpoint {path}")
            self._data[path] = raw
            self.puts += 1

    def history(self, event: str, path: str | None, **details: Any) -> None:
        """Append a history event."""
        with self._lock:
            self._events.append(HistoryEvent(event, path, dict(details), time.time()))

    # Helpers for tests and debugging.

    @property
    def events(self) -> list[HistoryEvent]:
        """A snapshot of the history."""
        with self._lock:
            return list(self._events)

    def event_names(self) -> list[str]:
        """Event names in order."""
        return [e.event for e in self.events]

    def events_for(self, path: str | None) -> list[str]:
        """Event names in order for one path (None: execution-level events)."""
        return [e.event for e in self.events if e.path == path]

    def paths(self) -> list[str]:
        """Every checkpointed path."""
        with self._lock:
            return sorted(self._data)

    def clear_history(self) -> None:
        """Forget recorded events (keeps checkpoints)."""
        with self._lock:
            self._events.clear()
