"""Change notices: "these jobs changed", carried between processes so live streams wake without polling.

A notice is only a wake-up. The database stays the truth: a woken stream reads from its own cursor, so a lost or
duplicated notice costs at most one fallback poll interval (`live.fallback_poll_s`), never an event.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

# Keys a listener passes when it may have missed notices (a reconnect): every stream re-reads.
EVERYTHING = "*"


class ChangeFeed(Protocol):
    """Publishes and receives change notices for keys (job ids)."""

    name: str
    """`local`, `postgres` or `redis`: what /readyz and the benchmarks report."""

    crosses_processes: bool
    """Whether a notice published in one process reaches listeners in another."""

    transactional_channel: str | None
    """A PostgreSQL channel the store notifies inside the committing transaction (delivered at commit, atomic
    with it); None: the store calls `publish()` after the commit instead."""

    def publish(self, keys: Collection[str]) -> None:
        """Tell every listener (in every process, where the feed crosses processes) that these keys changed.
        Called after the change committed; never raises (a lost notice only delays a stream)."""
        ...

    def listen(self, on_keys: Callable[[list[str]], None]) -> None:
        """Start receiving in this process: `on_keys(keys)` runs on the feed's own thread for each notice
        (`[EVERYTHING]` each time it (re)connects: what was sent before is lost). Idempotent: one listening
        connection per process."""
        ...

    def close(self) -> None:
        """Stop listening and release connections."""
        ...
