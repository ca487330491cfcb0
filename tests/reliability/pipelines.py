"""Test pipelines for the reliability suite, loaded by worker subprocesses through
``REELFORGE_EXTRA_PIPELINES='["tests.reliability.pipelines"]'``.

Every task appends ``start``/``end`` lines to the file named by the job input's ``log`` so a test can
count executions across processes::

    start <job_id> <path> <job attempt> <pid> <wall time> <attempt of an existing checkpoint, or 0>

One ``os.write`` on an ``O_APPEND`` descriptor per line: lines from concurrent processes never interleave.
This module must import nothing from pytest: it runs inside ``reelforge worker``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelforge import errors
from reelforge.domain.pipeline import Graph, Map, Parallel, Pipeline, Task
from reelforge.runtime.context import StepContext

STEPS_PRICE = 3
SLOW_PRICE = 2
FAIL_PRICE = 2


def record(ctx: StepContext, what: str) -> None:
    log = ctx.job_input.get("log") if isinstance(ctx.job_input, dict) else None
    if not log:
        return
    found = 0
    if what == "start":
        # A probe for the test: is this step's output already checkpointed while it starts? The runner
        # must never run a step whose checkpoint exists (it would be recomputing finished work).
        store = getattr(ctx.services, "store", None)
        if store is not None:
            with store.tx(write=False) as tx:
                cp = tx.jobs.checkpoint(ctx.job_id, ctx.path)
                found = cp.attempt if cp is not None else 0
    line = f"{what} {ctx.job_id} {ctx.path} {ctx.attempt} {os.getpid()} {time.time():.6f} {found}\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _work(ctx: StepContext) -> None:
    lo = float(ctx.job_input.get("min_ms", 50)) / 1000
    hi = float(ctx.job_input.get("max_ms", 200)) / 1000
    ctx.sleep(random.uniform(lo, hi))


def _step(fn: Any) -> Any:
    """Wrap a pure function of the step input as a task that does a little work and records itself."""

    def task(ctx: StepContext, data: Any) -> Any:
        record(ctx, "start")
        _work(ctx)
        out = fn(data)
        record(ctx, "end")
        return out

    task.__name__ = task.__qualname__ = fn.__name__
    task.__module__ = __name__
    return task


# --- test.steps: Task -> Map(Task -> Task) -> Parallel(Task | Task -> Task) -> Task -----------------

def prepare(data: dict[str, Any]) -> dict[str, Any]:
    n = int(data["n"])
    return {"base": n * 7 + 1, "items": [int(v) for v in data["items"]]}


def square(item: dict[str, Any]) -> dict[str, Any]:
    return {"v": item["v"] * item["v"], "base": item["base"]}


def shift(item: dict[str, Any]) -> int:
    return int(item["v"] + item["base"])


def total(values: list[int]) -> int:
    return sum(values)


def spread(values: list[int]) -> int:
    return max(values) - min(values)


def double(value: int) -> int:
    return value * 2


def finish(outs: list[int]) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(outs).encode()).hexdigest()[:16]
    return {"total": outs[0], "spread2": outs[1], "digest": digest}


def _map_items(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"v": v, "base": data["base"]} for v in data["items"]]


def expected_steps_output(n: int, items: list[int]) -> dict[str, Any]:
    """What test.steps must return for this input, computed without the runner."""
    base = prepare({"n": n, "items": items})
    values = [shift(square(it)) for it in _map_items(base)]
    return finish([total(values), double(spread(values))])


def steps_task_paths(items: list[int]) -> list[str]:
    """Every task path of one test.steps execution (composites excluded)."""
    paths = ["prepare"]
    for i in range(len(items)):
        paths += [f"squares/item[{i}]/square", f"squares/item[{i}]/shift"]
    paths += ["combine/branch[0]/total", "combine/branch[1]/spread", "combine/branch[1]/double", "finish"]
    return paths


STEPS = Pipeline(
    kind="test.steps", version=1,
    description="Reliability test: several short steps, a Map and a Parallel; records every execution.",
    graph=Graph(start_at="prepare", states=(
        Task("prepare", _step(prepare), next="squares"),
        Map("squares", items=_map_items, max_concurrency=2, next="combine", iterator=Graph(
            start_at="square", states=(
                Task("square", _step(square), next="shift"),
                Task("shift", _step(shift), end=True),
            ))),
        Parallel("combine", next="finish", branches=(
            Graph(start_at="total", states=(Task("total", _step(total), end=True),)),
            Graph(start_at="spread", states=(
                Task("spread", _step(spread), next="double"),
                Task("double", _step(double), end=True),
            )),
        )),
        Task("finish", _step(finish), end=True),
    )),
    price=lambda _: STEPS_PRICE,
    # Every SIGKILL of the worker holding the job costs one attempt (lease expiry); the test kills 20 times.
    max_attempts=100,
)


# --- test.slow: s1 -> s2 -> s3 -> s4, each sleeping step_s -------------------------------------------

SLOW_STEPS = ("s1", "s2", "s3", "s4")


def _slow(name: str, last: bool) -> Any:
    def task(ctx: StepContext, data: dict[str, Any]) -> dict[str, Any]:
        record(ctx, "start")
        seconds = float(ctx.job_input.get("step_s", 1.0))
        if ctx.job_input.get("cooperative", True):
            ctx.sleep(seconds)  # stops at a cancel, a lost lease or a shutdown release
        else:
            time.sleep(seconds)  # a step that never checks: only the fencing token stops its writes
        out: dict[str, Any] = {"done": [*data.get("done", []), name]}
        if last:
            # Who produced the result: lets a test tell which worker's output the job kept.
            out["pid"] = os.getpid()
            out["attempt"] = ctx.attempt
        record(ctx, "end")
        return out

    task.__name__ = task.__qualname__ = f"slow_{name}"
    task.__module__ = __name__
    return task


SLOW = Pipeline(
    kind="test.slow", version=1,
    description="Reliability test: four sequential steps of step_s seconds each.",
    graph=Graph(start_at="s1", states=tuple(
        Task(name, _slow(name, i == len(SLOW_STEPS) - 1),
             **({"end": True} if i == len(SLOW_STEPS) - 1 else {"next": SLOW_STEPS[i + 1]}))
        for i, name in enumerate(SLOW_STEPS)
    )),
    price=lambda _: SLOW_PRICE,
    max_attempts=10,
)


# --- failures ---------------------------------------------------------------------------------------

def flaky(ctx: StepContext, data: dict[str, Any]) -> None:
    record(ctx, "start")
    raise errors.TransientError("the backend is down (on purpose)")


def invalid(ctx: StepContext, data: dict[str, Any]) -> None:
    record(ctx, "start")
    raise errors.ValidationFailed("the input cannot be processed (on purpose)")


ALWAYS_FAILS = Pipeline(
    kind="test.always_fails", version=1, description="Reliability test: a step that always fails (retryable).",
    graph=Graph(start_at="flaky", states=(Task("flaky", flaky, end=True),)),
    price=lambda _: FAIL_PRICE, max_attempts=3,
)

INVALID = Pipeline(
    kind="test.invalid", version=1, description="Reliability test: a step that fails for good (not retryable).",
    graph=Graph(start_at="invalid", states=(Task("invalid", invalid, end=True),)),
    price=lambda _: FAIL_PRICE, max_attempts=3,
)

PIPELINES = [STEPS, SLOW, ALWAYS_FAILS, INVALID]


# --- reading the side-effect log --------------------------------------------------------------------

@dataclass(frozen=True)
class Execution:
    what: str  # "start" or "end"
    job_id: str
    path: str
    attempt: int
    pid: int
    ts: float
    checkpointed: int  # on "start": attempt of a checkpoint of this path that already existed, else 0


def read_log(path: Path) -> list[Execution]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, job_id, step, attempt, pid, ts, found = line.split()
        out.append(Execution(what, job_id, step, int(attempt), int(pid), float(ts), int(found)))
    return out
