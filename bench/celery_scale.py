"""The Celery side of bench/scale_out.py: a no-op and the CPU-bound loop, each recording when it finished in a
Redis hash (no result backend), on the broker database BENCH_CELERY_REDIS_URL."""

from __future__ import annotations

import os
import threading
import time

import redis
from celery import Celery

from bench.scale_work import spin as spin_work

# Its own Redis database and queue: bench/queue_throughput.py's Celery app (db 9) may run on the same server.
REDIS_URL = os.environ.get("BENCH_CELERY_REDIS_URL", "redis://127.0.0.1:6379/11")
DONE_KEY = "scale:done"
WARM_KEY = "scale:warm"

app = Celery("reelforge_scale_bench", broker=REDIS_URL)
app.conf.update(task_ignore_result=True, task_serializer="json", accept_content=["json"],
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                worker_send_task_events=False, worker_prefetch_multiplier=4, task_default_queue="reelforge-scale")
_local = threading.local()


def _redis() -> redis.Redis:
    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "pid", None) != os.getpid():
        client = redis.Redis.from_url(REDIS_URL)
        _local.client, _local.pid = client, os.getpid()
    return client


@app.task(name="scale.noop")
def noop(job_id: str, warm: bool = False) -> None:
    r = _redis()
    if warm:
        r.hset(WARM_KEY, job_id, f"{os.uname().nodename}:{os.getpid()}")
    r.hset(DONE_KEY, job_id, time.time())


@app.task(name="scale.spin")
def spin(job_id: str, n: int) -> None:
    spin_work(n)
    _redis().hset(DONE_KEY, job_id, time.time())
