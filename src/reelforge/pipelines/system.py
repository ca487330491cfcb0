"""Platform pipelines: `system.noop` (a canary job: proves API -> queue -> worker -> events end to end)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reelforge.domain.pipeline import Graph, Pipeline, Resources, Task
from reelforge.runtime.context import StepContext


class NoopInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    echo: Any = Field(default=None, description="Returned as the output")


def noop(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Return the input; costs nothing."""
    return {"echo": data.get("echo")}


NOOP = Pipeline(
    kind="system.noop", version=1, description="Canary job: returns its input. Used by health checks and benchmarks.",
    graph=Graph(start_at="noop", states=(Task("noop", noop, resources=Resources(cpu=0.1, memory_mb=16), end=True),)),
    input_model=NoopInput, price=lambda _: 0,
)

PIPELINES = [NOOP]
