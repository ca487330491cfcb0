"""The Celery baseline for bench/queue_throughput.py: one no-op task on a Redis broker.

The task records when it finished (time.time(), same clock as the client's submit stamp) in a Redis hash,
so the bench can compute submit-to-done latency without a result backend. The broker uses a dedicated
Redis database (BENCH_CELERY_REDIS_URL, default db 9) that the bench flushes before each run.
"""

from __future__ import annotations

import os
import threading
import time

import redis
from celery import Celery

REDIS_URL = os.environ.get("BENCH_CELERY_REDIS_URL", "redis://127.0.0.1:6379/9")
DONE_KEY = "bench:done"  # job id -> time.time() when the task body finished
WARM_KEY = "bench:warm"  # warm-up job id -> "hostname:pid" that ran it

app = Celery("reelforge_bench", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,  # no result backend: completion is recorded by the task itself
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)

_local = threading.local()


def _redis() -> redis.Redis:
    # One client per thread (threads pool) / per child (prefork); built after fork, never at import time.
    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "pid", None) != os.getpid():
        client = redis.Redis.from_url(REDIS_URL)
        _local.client, _local.pid = client, os.getpid()
    return client


@app.task(name="bench.noop")
def noop(job_id: str, warm: bool = False) -> None:
    """Do nothing, then record the finish time (and, for warm-up jobs, which process ran it)."""
    r = _redis()
    if warm:
        r.hset(WARM_KEY, job_id, f"{os.uname().nodename}:{os.getpid()}")
    r.hset(DONE_KEY, job_id, repr(time.time()))
