"""Model adapter contract: one model or tool behind setup() and run()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    pass

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    task: str
    description: str
    available: bool
    reason: str | None = None
    test_model: bool = False
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ModelAdapter(Protocol):
    name: str
    task: str
    description: str
    test_model: bool

    def availability(self) -> Availability:
        """Whether the adapter can run here (weights present, dependency installed) and why not."""
        ...

    def setup(self) -> None:
        """Load weights; idempotent and safe to call from several threads."""
        ...

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> Any:
        """Run once on a task-specific request."""
        ...
