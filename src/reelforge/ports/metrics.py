"""Publishing metric datums to a cloud metrics service (CloudWatch PutMetricData), for scaling policies and alarms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Datum:
    """One value of one metric, with its dimensions (name, value) in order; unit in CloudWatch's words
    (``Count``, ``Seconds``, ``None``)."""

    name: str
    value: float
    unit: str = "None"
    dimensions: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@runtime_checkable
class MetricSink(Protocol):
    """Where datums go. One call publishes them all (in as many requests as the service needs)."""

    def put(self, namespace: str, datums: Sequence[Datum], timestamp: float) -> int:
        """Publish ``datums`` stamped ``timestamp`` (Unix seconds); returns the number of requests made. Raises
        on any failure (the caller logs and counts it)."""
        ...
