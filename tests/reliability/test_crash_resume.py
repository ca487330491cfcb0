"""SIGKILL workers at random points of multi-step jobs; every job still ends once, correctly, charged once.

Proves: a lease that stops being renewed expires and another worker takes the job (LeaseExpired, a new
attempt); the new attempt resumes from checkpoints (ExecutionResumed, TaskSkipped) and a step whose
output was checkpointed never runs again; the final transition, the outputs, the credit settle and the
`job.succeeded` event happen exactly once per job, whatever was killed when.

Design: real `reelforge worker --concurrency 2` processes (lease 2 s, heartbeat 0.3 s, poll 0.05 s) run
`test.steps` jobs (Task -> Map(max_concurrency=2) -> Parallel -> Task, 50-200 ms per step). 20 rounds:
wait a random 0.2-1.5 s, SIGKILL a worker that holds a job at that moment (so every kill lands inside
a job), start a replacement. The queue is topped up so that there is always work to interrupt. Every
step appends start/end lines to a file, and at each start notes whether its own checkpoint already
exists: the strict check that finished work is never recomputed. Seed: REELFORGE_CHAOS_SEED.
"""

from __future__ import annotations

import collections
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from reelforge.domain.types import Principal, Role
from tests.reliability.conftest import WorkerProcs, balance, job_record, wait_until
from tests.reliability.pipelines import STEPS_PRICE, expected_steps_output, read_log, steps_task_paths

ROUNDS = 20
JOBS = 10  # kept unfinished until the last kill: more than the slots, so an idle worker finds work
WORKERS = 3  # a replacement takes seconds to import; the others keep the jobs moving meanwhile
MAX_JOBS = 60  # enough that 20 kills find work however fast the workers finish (credits granted below)
ITEMS = 8


def _holders(container: Any) -> set[int]:
    """PIDs of the workers that hold a running job now (worker ids are host:pid:suffix)."""
    with container.store.tx(write=False) as tx:
        running = tx.jobs.jobs(owner_id=None, status="running", limit=100)
    pids = set()
    for j in running:
        try:
            pids.add(int(str(j.worker_id).split(":")[1]))
        except (IndexError, ValueError):
            pass
    return pids


@pytest.mark.reliability
def test_sigkill_at_random_points(container: Any, user: Any, procs: WorkerProcs, tmp_path: Path) -> None:
    seed = int(os.environ.get("REELFORGE_CHAOS_SEED", time.time_ns() % 1_000_000))
    print(f"chaos seed {seed} (rerun with REELFORGE_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    log = tmp_path / "effects.log"
    root = Principal(user_id="chaos-admin", email="chaos@example.com", role=Role.admin)
    container.credits.grant(root, user.user_id, MAX_JOBS * STEPS_PRICE, note="chaos test budget")
    grant = balance(container, user.user_id)

    inputs: dict[str, dict[str, Any]] = {}

    def submit() -> None:
        k = len(inputs)
        data = {"log": str(log), "n": k, "items": [k + 2 * i - 3 for i in range(ITEMS)]}
        job, created = container.jobs.submit(user, "test.steps", data)
        assert created
        inputs[job.id] = data

    def unfinished() -> int:
        with container.store.tx(write=False) as tx:
            return sum(1 for j in inputs if tx.jobs.job(j).status in ("queued", "running"))  # type: ignore[union-attr]

    for _ in range(JOBS):
        submit()
    alive = [procs.start() for _ in range(WORKERS)]
    kills = 0
    t_loop = time.monotonic()
    waited = 0.0
    while kills < ROUNDS:
        # Keep work in the queue until the last kill, so that every kill lands in the middle of a job.
        while unfinished() < JOBS and len(inputs) < MAX_JOBS:
            submit()
        time.sleep(rng.uniform(0.2, 1.5))
        if not any(w.pid in _holders(container) for w in alive):
            # Replacements are still starting: wait for a claim, then let the job run a random while.
            t0 = time.monotonic()
            wait_until(lambda: any(w.pid in _holders(container) for w in alive), 60, "a worker to hold a job")
            waited += time.monotonic() - t0
            time.sleep(rng.uniform(0.1, 0.8))
        holding = [w for w in alive if w.pid in _holders(container)]
        if not holding:
            continue
        victim = rng.choice(holding)
        procs.kill(victim)
        kills += 1
        alive.remove(victim)
        # The others stay alive across the kill; the replacement starts at once.
        alive.append(procs.start())

    def all_done() -> bool:
        with container.store.tx(write=False) as tx:
            return all(tx.jobs.job(j).status in ("succeeded", "failed", "dead", "cancelled")  # type: ignore[union-attr]
                       for j in inputs)

    t_loop = time.monotonic() - t_loop
    t0 = time.monotonic()
    wait_until(all_done, 90, "every job to finish")
    t_end = time.monotonic() - t0
    assert all(w.alive() for w in alive), "a surviving worker crashed"

    effects = read_log(log)
    # The strict form of "never recomputed": no step ever started while its own checkpoint existed.
    recomputed = [e for e in effects if e.what == "start" and e.checkpointed]
    assert recomputed == [], f"checkpointed steps ran again: {recomputed[:5]}"
    started: collections.Counter[tuple[str, str, int]] = collections.Counter()
    ended: collections.Counter[tuple[str, str, int]] = collections.Counter()
    for e in effects:
        (started if e.what == "start" else ended)[(e.job_id, e.path, e.attempt)] += 1

    total_failures = resumed = skipped = 0
    for job_id, data in inputs.items():
        rec = job_record(container, job_id)
        job = rec.job
        assert job.status == "succeeded", (job.status, job.error_code, job.error_message)
        assert job.outputs == expected_steps_output(data["n"], data["items"])

        # Charged exactly once: one reserve, one settle, no refund.
        assert [(e.kind, e.amount) for e in rec.ledger] == [("reserve", -STEPS_PRICE), ("settle", 0)]
        assert job.credits_state == "settled"
        assert [e.type for e in rec.outbox] == ["job.succeeded"]
        assert rec.count("JobSucceeded") == 1 and rec.count("ExecutionSucceeded") == 1

        # Every claim is an attempt; every lost attempt was a lease expiry (nothing else failed).
        assert rec.count("JobStarted") == job.attempt
        assert rec.count("LeaseExpired") == job.failures == job.attempt - 1
        total_failures += job.failures
        expired = {e.attempt for e in rec.events if e.type == "LeaseExpired"}
        # Fenced history: once attempt n+1 started, nothing of attempt n was written any more.
        attempts = [e.attempt for e in rec.events if e.type != "JobQueued"]
        assert attempts == sorted(attempts), f"history of {job_id} goes back to an older attempt: {attempts}"
        final = rec.types(job.attempt)
        assert final.count("ExecutionStarted") + final.count("ExecutionResumed") == 1
        assert rec.count("ExecutionStarted") <= 1
        resumed += "ExecutionResumed" in final
        skipped += final.count("TaskSkipped")

        for path in steps_task_paths(data["items"]):
            cp = rec.checkpoints.get(path)
            assert cp is not None, f"{job_id} {path}: no checkpoint"
            starts = sorted(a for (j, p, a) in started.elements() if j == job_id and p == path)
            ends = sorted(a for (j, p, a) in ended.elements() if j == job_id and p == path)
            assert starts and ends, f"{job_id} {path}: never ran to the end"
            # Checkpointed once, never recomputed: no attempt after the one whose output was kept ran it.
            assert max(starts) == cp.attempt, (path, starts, cp.attempt)
            assert starts.count(cp.attempt) == 1 and ends.count(cp.attempt) == 1, (path, starts, ends)
            # Each earlier execution was in flight in an attempt that died, at most one per attempt.
            assert set(starts) - {cp.attempt} <= expired, (path, starts, expired)
            assert len(set(starts)) == len(starts), f"{path} ran twice in one attempt: {starts}"

    interrupted = sum(1 for key in started if key not in ended)
    print(f"kills {ROUNDS}, jobs {len(inputs)}, lease expiries {total_failures}, "
          f"steps interrupted {interrupted}, resumed executions {resumed} (skipped {skipped} checkpointed states), "
          f"workers started {len(procs.procs)}; kill loop {t_loop:.1f}s (waiting for a claim {waited:.1f}s), "
          f"then {t_end:.1f}s to finish")
    # Each kill took down a worker that held a job (barring a job that ended in the same instant).
    assert total_failures >= ROUNDS // 2 and resumed >= 1 and skipped >= 1, "kills did not hit running jobs"
    assert balance(container, user.user_id) == grant - len(inputs) * STEPS_PRICE
