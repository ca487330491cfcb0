"""The CPU-bound unit of work that bench/scale_out.py gives both reelforge (job kind `bench.cpu`) and Celery (task
`bench.celery_scale.spin`): the same pure-Python loop, so both hold the GIL and one core each for the same time."""

from __future__ import annotations

from typing import Any

from reelforge.domain.pipeline import Graph, Pipeline, Resources, Task

SPIN_N = 300_000  # ~30-60 ms of one core on this machine


def spin(n: int = SPIN_N) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def cpu_step(ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
    return {"i": data.get("i"), "total": spin(int(data.get("n", SPIN_N)))}


CPU = Pipeline(kind="bench.cpu", version=1, description="a CPU-bound step (bench/scale_out.py)",
               graph=Graph(start_at="spin", states=(Task("spin", cpu_step, resources=Resources(cpu=1), end=True),)),
               price=lambda _: 0)
PIPELINES = [CPU]
