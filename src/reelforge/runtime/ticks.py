"""Periodic work an application registers with the worker's maintenance loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tick:
    """One registered periodic job: `run(container, worker_id)` is called on every maintenance pass.

    It is called often (a few times a second) on every worker, so it decides for itself whether its time has
    come and whether this worker wins the turn (e.g. with `tx.try_schedule`), and hands long work to its own
    thread: the maintenance loop also reaps leases and delivers events.
    """

    name: str
    run: Callable[[Any, str], None]
