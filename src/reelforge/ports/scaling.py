"""Scaling targets: something that runs N workers of a resource class (local processes, an Auto Scaling group)."""

from __future__ import annotations

from typing import Protocol


class Scaler(Protocol):
    def current(self, resource_class: str) -> int:
        """Workers of the class that run now or are starting (the count the policy scales from)."""
        ...

    def set_desired(self, resource_class: str, count: int) -> None:
        """Start or stop workers so the class gets ``count``; stopping is graceful (SIGTERM: finish or hand
        back)."""
        ...

    def close(self) -> None:
        """Release what the scaler holds (a local scaler stops its workers)."""
        ...
