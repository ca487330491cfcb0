"""Execution-history times are when the steps ran, not when their (buffered) events were written.

The runner buffers history and writes it with the next checkpoint, so the event rows of parallel branches and
map items are written well after (or, for a step's start, at the end of) the step. `GET /v1/jobs/{id}/history`
must still give each step's real start and end: a step's `TaskStateEntered.ts + duration_s` is its
`TaskSucceeded.ts`, for map items and parallel branches too, and concurrent items start together.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings
from tests.reliability.pipelines import steps_task_paths

ITEMS = [2, 3, 4, 5]
STEP_MIN_MS, STEP_MAX_MS = 150, 250


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, extra_pipelines=["tests.reliability.pipelines"])


def _t(ts: str) -> float:
    return dt.datetime.fromisoformat(ts).timestamp()


def test_step_times_agree_with_durations(client: Any, alice: UserHandle, worker: Any) -> None:
    r = alice.post("/v1/jobs", params={"wait": 60}, json={"kind": "test.steps", "input": {
        "n": 3, "items": ITEMS, "min_ms": STEP_MIN_MS, "max_ms": STEP_MAX_MS}})
    assert r.status_code in (200, 201, 202), r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    events = alice.get(f"/v1/jobs/{job['id']}/history").json()["events"]
    by = {(e["type"], e["path"]): e for e in events}

    pairs = [("TaskStateEntered", "TaskSucceeded", p) for p in steps_task_paths(ITEMS)]
    pairs += [("MapIterationStarted", "MapIterationSucceeded", f"squares/item[{i}]") for i in range(len(ITEMS))]
    pairs += [("MapStateEntered", "MapStateExited", "squares"), ("ParallelStateEntered", "ParallelStateExited",
                                                                  "combine")]
    for start, end, path in pairs:
        began, ended = by[(start, path)], by[(end, path)]
        duration = ended["details"]["duration_s"]
        assert _t(ended["ts"]) - _t(began["ts"]) == pytest.approx(duration, abs=2e-6), (path, began, ended)
        assert "at" not in began["details"] and "at" not in ended["details"]
        assert _t(began["ts"]) <= _t(began["recorded_at"]) + 0.01  # written at or after it happened
    for path in steps_task_paths(ITEMS):
        assert by[("TaskSucceeded", path)]["details"]["duration_s"] >= STEP_MIN_MS / 1000 - 0.01

    # The map runs two items at a time: items 0 and 1 start together, item 2 when one of them ends.
    starts = [_t(by[("MapIterationStarted", f"squares/item[{i}]")]["ts"]) for i in range(len(ITEMS))]
    ends = [_t(by[("MapIterationSucceeded", f"squares/item[{i}]")]["ts"]) for i in range(len(ITEMS))]
    assert abs(starts[1] - starts[0]) < STEP_MIN_MS / 1000
    assert min(ends[:2]) <= starts[2] + 0.05
    # Steps of one item run in order; the parallel branches overlap.
    for i in range(len(ITEMS)):
        assert _t(by[("TaskSucceeded", f"squares/item[{i}]/square")]["ts"]) \
            <= _t(by[("TaskStateEntered", f"squares/item[{i}]/shift")]["ts"]) + 1e-6
    total = by[("TaskStateEntered", "combine/branch[0]/total")]
    spread = by[("TaskStateEntered", "combine/branch[1]/spread")]
    assert abs(_t(total["ts"]) - _t(spread["ts"])) < STEP_MIN_MS / 1000
