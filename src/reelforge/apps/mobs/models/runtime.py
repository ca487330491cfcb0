"""Per-process, thread-safe, lazy caches for loaded models, and the CPU thread limit they run under.

Loaded weights are process-wide on purpose: every adapter instance (one per registry, several in tests)
shares one copy, and the first caller of a key loads it while the others wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
CPU_THREADS = 2

_lock = threading.Lock()
_key_locks: dict[str, threading.Lock] = {}
_values: dict[str, Any] = {}


def cached(key: str, load: Callable[[], T]) -> T:
    """The value loaded once per process under `key`; a failed load is retried on the next call."""
    if key in _values:
        return _values[key]  # type: ignore[no-any-return]
    with _lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        if key not in _values:
            _values[key] = load()
        return _values[key]  # type: ignore[no-any-return]


def limit_torch_threads() -> None:
    """Keep torch at CPU_THREADS intra-op threads on CPU (never raise it)."""
    import torch

    if torch.get_num_threads() > CPU_THREADS:
        torch.set_num_threads(CPU_THREADS)
    torch.set_flush_denormal(True)


def preload(c: Any) -> list[str]:
    """At worker start (settings `mobs.preload_models`): set up the configured adapter of each video task,
    where it is a local one (loads OCR, speech, frame and text models), so the first video does not pay for
    loading them. Returns the (task, model) pairs set up; an adapter that cannot run here is skipped and its
    first job reports why, as before."""
    import logging

    from reelforge.apps.mobs.models.tasks import TASK_EMBED, TASK_PARTICIPATION

    log = logging.getLogger("reelforge.apps.mobs")
    cfg = c.settings.mobs
    done: list[str] = []
    if not getattr(cfg, "preload_models", False):
        return done
    for task, name in ((TASK_PARTICIPATION, cfg.participation_adapter), (TASK_EMBED, cfg.embed_adapter)):
        if name != "local":
            continue
        try:
            c.models.ensure_ready(task, name)
            done.append(f"{task}:{name}")
        except Exception as exc:  # unavailable here: the job says so when it runs
            log.info("not preloading %s/%s: %s", task, name, exc)
    if done:
        log.info("video models loaded at worker start: %s", ", ".join(done))
    return done
