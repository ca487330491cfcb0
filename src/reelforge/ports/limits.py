"""The shared counter behind rate limits that hold across API processes."""

from __future__ import annotations

from typing import Protocol


class WindowCounter(Protocol):
    """Fixed-window counters every API process shares (a database table, Redis)."""

    def add(self, key: str, window_start: int, n: int, expires_at: float) -> int:
        """Add `n` to the counter of `key` in the window starting at `window_start` (unix seconds), atomically,
        and return its new total. The counter may be forgotten after `expires_at`."""
        ...

    def clear(self, prefix: str) -> None:
        """Forget every counter whose key starts with `prefix` (tests and operators resetting a limit)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
