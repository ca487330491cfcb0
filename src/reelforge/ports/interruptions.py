"""Notice that this machine is about to be taken away (a Spot interruption)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class InterruptionNotice:
    action: str  # "terminate", "stop" or "hibernate" (EC2's words), or "signal" for SIGTERM
    time: str = ""  # when it happens (ISO 8601, as the metadata service says), when known


class InterruptionNotices(Protocol):
    def poll(self) -> InterruptionNotice | None:
        """The notice when one is posted, else None; never raises for an unreachable source (None)."""
        ...
