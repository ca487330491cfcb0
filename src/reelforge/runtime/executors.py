"""Where task functions run.

The runner orchestrates in its own plain threads and hands only leaf task functions to an executor.
Steps declare what they need (:class:`~reelforge.domain.pipeline.Resources`: cpu, gpu, memory); the
executor decides where that runs. The contract is deliberately small so that a Ray executor
(``ray.remote(num_cpus=..., num_gpus=..., memory=...)`` wrapped in a Future) can drop in:

- ``submit(fn, *args, resources=...)`` starts ``fn(*args)`` somewhere and returns a
  :class:`concurrent.futures.Future`. Exceptions raised by ``fn`` (BaseException included) must be set
  on the future, not raised from ``submit``.
- ``resources_ok(res)`` says whether this executor can ever satisfy ``res``; the runner fails the
  step with ``resources_unavailable`` instead of queueing it forever.
- ``shutdown()`` releases workers; the owner of the executor calls it, never the runner.

A task function given to ``submit`` must never wait on the same executor (the runner guarantees this
for its own work), so a bounded pool cannot deadlock.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from reelforge.domain.pipeline import Resources
from reelforge.errors import ReelforgeError

T = TypeVar("T")


class ResourcesUnavailable(ReelforgeError):
    """A step asks for more than the executor can ever provide."""

    status, code, title = 503, "resources_unavailable", "Step resources unavailable"


class Executor(Protocol):
    """Runs task functions; see the module docstring for the contract."""

    def submit(self, fn: Callable[..., T], /, *args: Any, resources: Resources | None = None) -> Future[T]:
        """Start ``fn(*args)`` and return its future."""
        ...

    def resources_ok(self, res: Resources) -> bool:
        """Whether ``res`` can ever be satisfied here."""
        ...

    def shutdown(self) -> None:
        """Stop accepting work and release workers."""
        ...


class LocalExecutor:
    """A thread pool in the worker process.

    Without ``capacity`` every request is accepted: on a laptop a step that declares ``gpu=1`` still
    runs, and the model adapter picks the device it finds. With ``capacity`` a request larger than it
    is refused by :meth:`resources_ok`. Concurrency is bounded by ``max_workers`` only; resources are
    not packed (that is the Ray executor's job).
    """

    def __init__(self, max_workers: int = 4, *, capacity: Resources | None = None) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers
        self.capacity = capacity
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="reelforge-step")

    def submit(self, fn: Callable[..., T], /, *args: Any, resources: Resources | None = None) -> Future[T]:
        """Run ``fn(*args)`` in the pool, carrying the caller's contextvars (trace and log context)."""
        ctx = contextvars.copy_context()
        return self._pool.submit(ctx.run, fn, *args)

    def resources_ok(self, res: Resources) -> bool:
        """True without a declared capacity; else every dimension must fit."""
        cap = self.capacity
        if cap is None:
            return True
        return res.cpu <= cap.cpu and res.gpu <= cap.gpu and res.memory_mb <= cap.memory_mb

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pool (waiting for running steps unless wait=False); queued steps are cancelled."""
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
