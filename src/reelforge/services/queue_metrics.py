"""The queue as the scaling policies see it: ready jobs, the oldest one's wait and running jobs, per job kind and
per resource class (``cpu`` or ``gpu``: the worker fleet a kind's jobs need, from its pipeline's tasks).

One read serves `/metrics`, the metrics published to the cloud (domain/cloud.py names them) and the autoscaler.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reelforge.domain.cloud import RESOURCE_CLASSES
from reelforge.domain.pipeline import PipelineRegistry
from reelforge.ports.repositories import Store


@dataclass(frozen=True)
class QueueFigure:
    """Ready (queued and due) jobs, seconds the oldest ready one has waited, and running jobs."""

    depth: int = 0
    oldest_age_s: float = 0.0
    running: int = 0

    def plus(self, other: QueueFigure) -> QueueFigure:
        return QueueFigure(self.depth + other.depth, max(self.oldest_age_s, other.oldest_age_s),
                           self.running + other.running)


@dataclass(frozen=True)
class QueueFigures:
    by_kind: dict[str, QueueFigure] = field(default_factory=dict)
    # Every resource class is present, at zero when idle, so a scaling policy always sees a value.
    by_class: dict[str, QueueFigure] = field(default_factory=dict)
    # The resource class of each kind in by_kind.
    kind_class: dict[str, str] = field(default_factory=dict)


class QueueMetrics:
    def __init__(self, store: Store, registry: PipelineRegistry) -> None:
        self.store = store
        self.registry = registry

    def resource_class(self, kind: str) -> str:
        """The kind's resource class; a kind no installed pipeline knows (left from an older version) is ``cpu``."""
        try:
            return self.registry.get(kind).resource_class
        except Exception:
            return "cpu"

    def figures(self) -> QueueFigures:
        with self.store.tx(write=False) as tx:
            rows = tx.alarms.queue_by_kind()
        by_kind: dict[str, QueueFigure] = {}
        kind_class: dict[str, str] = {}
        by_class = {c: QueueFigure() for c in RESOURCE_CLASSES}
        for kind, depth, age, running in sorted(rows):
            figure = QueueFigure(depth, round(age, 3), running)
            by_kind[kind] = figure
            kind_class[kind] = cls = self.resource_class(kind)
            by_class[cls] = by_class.get(cls, QueueFigure()).plus(figure)
        return QueueFigures(by_kind=by_kind, by_class=by_class, kind_class=kind_class)
