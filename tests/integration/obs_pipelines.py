"""Pipelines for the observability tests, loaded through `extra_pipelines=["tests.integration.obs_pipelines"]`.

- `test.fail`: `prepare` succeeds, `boom` fails permanently (ValidationFailed): the job ends `failed`, refunded.
- `test.fan`: a Parallel state `fan` with branches `a` and `b`, then `done`; each step logs one line.
"""

from __future__ import annotations

import logging
from typing import Any

from reelforge import errors
from reelforge.domain.pipeline import Graph, Parallel, Pipeline, Task
from reelforge.runtime.context import StepContext

FAIL_PRICE = 2
log = logging.getLogger("tests.obs")


def ok(ctx: StepContext, data: Any) -> dict[str, Any]:
    log.info("step %s ran", ctx.path)
    return {"ok": True}


def boom(ctx: StepContext, data: Any) -> Any:
    raise errors.ValidationFailed("boom on purpose", code="boom")


FAIL = Pipeline(
    kind="test.fail", version=1, description="Fails in its second step",
    graph=Graph(start_at="prepare", states=(Task("prepare", ok, next="boom"), Task("boom", boom, end=True))),
    price=lambda _: FAIL_PRICE,
)

FAN = Pipeline(
    kind="test.fan", version=1, description="Parallel branches, then a last step",
    graph=Graph(start_at="fan", states=(
        Parallel("fan", branches=(Graph(start_at="a", states=(Task("a", ok, end=True),)),
                                  Graph(start_at="b", states=(Task("b", ok, end=True),))), next="done"),
        Task("done", ok, end=True),
    )),
    price=lambda _: 0,
)

PIPELINES = [FAIL, FAN]
