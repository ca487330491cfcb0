"""The model registry: every model adapter, by task and name, with whether it can run here and why not.

It also owns adapter setup (once per adapter, under a lock, timed) and keeps small per-adapter counters
that the metrics layer reads through `stats()`. Importing this module imports no ML library.
"""

from __future__ import annotations

import builtins
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from reelforge.errors import Conflict, JobCancelled, ModelUnavailable, NotFound, ReelforgeError
from reelforge.ports.models import Availability, CancelledFn, ModelAdapter, ModelInfo, ProgressFn

if TYPE_CHECKING:
    from collections.abc import Iterable

    from reelforge.applications import AppManifest
    from reelforge.config import Settings


@dataclass
class _AdapterStats:
    task: str
    name: str
    loaded: bool = False
    load_s: float | None = None
    setup_failures: int = 0
    invocations: int = 0
    failures: int = 0
    cancellations: int = 0
    run_s_total: float = 0.0
    last_error: str | None = None
    loads: int = 0
    unloads: int = 0
    freed_bytes_total: int = 0


def _key(task: str, name: str) -> str:
    return f"{task}/{name}"


class ModelRegistry:
    """Adapters keyed by (task, name), in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adapters: dict[str, ModelAdapter] = {}
        self._setup_locks: dict[str, threading.Lock] = {}
        self._ready: set[str] = set()
        self._stats: dict[str, _AdapterStats] = {}
        self._last_used: dict[str, float] = {}  # monotonic time of the last ensure_ready() or run() end
        self._in_use: dict[str, int] = {}  # run() calls in flight per adapter

    def register(self, adapter: ModelAdapter, *, replace: bool = False) -> None:
        """Add an adapter under (adapter.task, adapter.name); a second one under the same key is refused
        (Conflict, code "model_exists") unless `replace`, which also forgets the old one's setup state."""
        key = _key(adapter.task, adapter.name)
        with self._lock:
            if key in self._adapters and not replace:
                raise Conflict(f"a model named {adapter.name!r} is already registered for {adapter.task}",
                               code="model_exists")
            self._adapters[key] = adapter
            self._setup_locks.setdefault(key, threading.Lock())
            self._ready.discard(key)
            self._stats[key] = _AdapterStats(task=adapter.task, name=adapter.name)

    def has(self, task: str, name: str) -> bool:
        """Whether an adapter is registered under (task, name)."""
        with self._lock:
            return _key(task, name) in self._adapters

    def get(self, task: str, name: str) -> ModelAdapter:
        """The adapter registered under (task, name); NotFound(code="model_not_found") if none."""
        with self._lock:
            adapter = self._adapters.get(_key(task, name))
        if adapter is None:
            raise NotFound(f"no model {name!r} for task {task!r}", code="model_not_found", task=task, model=name)
        return adapter

    def tasks(self) -> builtins.list[str]:
        """The tasks that have at least one adapter, sorted."""
        with self._lock:
            return sorted({a.task for a in self._adapters.values()})

    def info(self, task: str, name: str) -> ModelInfo:
        """One adapter's listing entry, with its availability checked now."""
        return self._info(self.get(task, name))

    def ensure_ready(self, task: str, name: str) -> ModelAdapter:
        """Return the adapter after making sure its setup() has run, once, in this process.

        Raises NotFound for an unknown model and ModelUnavailable (with the adapter's reason) when it
        cannot run here or its setup fails. A failed setup is tried again on the next call. Threads that
        ask for the same adapter wait for one setup; different adapters set up in parallel.
        """
        adapter = self.get(task, name)
        key = _key(task, name)
        self._last_used[key] = time.monotonic()
        if key in self._ready:
            return adapter
        with self._lock:
            setup_lock = self._setup_locks[key]
        with setup_lock:
            if key in self._ready:
                return adapter
            availability = self._availability(adapter)
            if not availability.available:
                raise ModelUnavailable(
                    availability.reason or f"{name} cannot run here", task=task, model=name
                )
            started = time.perf_counter()
            try:
                adapter.setup()
            except ReelforgeError as exc:
                self._record_setup_failure(key, exc)
                raise
            except Exception as exc:
                self._record_setup_failure(key, exc)
                raise ModelUnavailable(
                    f"{name} failed to load: {type(exc).__name__}: {exc}", task=task, model=name
                ) from exc
            elapsed = time.perf_counter() - started
            with self._lock:
                stats = self._stats[key]
                stats.loaded, stats.load_s = True, elapsed
                stats.loads += 1
                self._ready.add(key)
                self._last_used[key] = time.monotonic()
        return adapter

    def run(self, task: str, name: str, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> Any:
        """ensure_ready(), then the adapter's run(), counted in stats()."""
        key = _key(task, name)
        with self._lock:  # counted before ensure_ready: an idle unload never takes a model a run is about to use
            self._in_use[key] = self._in_use.get(key, 0) + 1
        try:
            adapter = self.ensure_ready(task, name)
            started = time.perf_counter()
            try:
                result = adapter.run(request, progress=progress, cancelled=cancelled)
            except BaseException as exc:
                self.record_invocation(task, name, time.perf_counter() - started, error=exc)
                raise
            self.record_invocation(task, name, time.perf_counter() - started)
            return result
        finally:
            with self._lock:
                self._in_use[key] -= 1
                self._last_used[key] = time.monotonic()

    def record_invocation(self, task: str, name: str, seconds: float,
                          error: BaseException | None = None) -> None:
        """Count one run of an adapter (for callers that call adapter.run() themselves)."""
        with self._lock:
            stats = self._stats.get(_key(task, name))
            if stats is None:
                return
            stats.invocations += 1
            stats.run_s_total += seconds
            if isinstance(error, JobCancelled):
                stats.cancellations += 1
            elif error is not None:
                stats.failures += 1
                stats.last_error = f"{type(error).__name__}: {error}"

    def unload_idle(self, idle_s: float, *, now: float | None = None) -> builtins.list[dict[str, Any]]:
        """Unload every loaded model not used for ``idle_s`` seconds (and not running now) whose adapter can give
        its weights back (``teardown()``). Each unload is reported with the process's resident memory before and
        after it, and counted in stats() (``unloads``, ``freed_bytes_total``); the next use loads the model
        again. This is "endpoint shutdown after processing" for a worker that keeps its models in memory."""
        now = time.monotonic() if now is None else now
        out: builtins.list[dict[str, Any]] = []
        with self._lock:
            candidates = [k for k in self._ready
                          if self._in_use.get(k, 0) == 0 and now - self._last_used.get(k, now) >= idle_s
                          and callable(getattr(self._adapters.get(k), "teardown", None))]
        for key in candidates:
            with self._lock:
                setup_lock = self._setup_locks[key]
            with setup_lock:
                with self._lock:
                    if key not in self._ready or self._in_use.get(key, 0) or \
                            now - self._last_used.get(key, now) < idle_s:
                        continue
                    self._ready.discard(key)
                    adapter = self._adapters[key]
                before = resident_bytes()
                idle_for = now - self._last_used.get(key, now)
                try:
                    adapter.teardown()  # type: ignore[attr-defined]
                except Exception as exc:
                    with self._lock:
                        self._stats[key].last_error = f"teardown: {type(exc).__name__}: {exc}"
                    continue
                trim_memory()
                after = resident_bytes()
                freed = max(0, before - after)
                with self._lock:
                    stats = self._stats[key]
                    stats.loaded = False
                    stats.unloads += 1
                    stats.freed_bytes_total += freed
                out.append({"model": key, "idle_s": round(idle_for, 3), "rss_before": before, "rss_after": after,
                            "freed_bytes": freed})
        return out

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per adapter ("task/name"): loaded, load_s, setup_failures, invocations, failures,
        cancellations, run_s_total, last_error. A snapshot; changing it changes nothing."""
        with self._lock:
            return {key: asdict(s) for key, s in self._stats.items()}

    def list(self, task: str | None = None) -> builtins.list[ModelInfo]:
        """Every adapter (of `task`, when given) in registration order, with availability checked now."""
        with self._lock:
            adapters = [a for a in self._adapters.values() if task is None or a.task == task]
        return [self._info(a) for a in adapters]

    # Internals -------------------------------------------------------------------------------------

    def _record_setup_failure(self, key: str, exc: BaseException) -> None:
        with self._lock:
            stats = self._stats[key]
            stats.setup_failures += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _availability(adapter: ModelAdapter) -> Availability:
        # A listing must not fail because one adapter's check does: report that adapter as unavailable.
        try:
            return adapter.availability()
        except Exception as exc:
            return Availability(False, f"availability check failed: {type(exc).__name__}: {exc}")

    def _info(self, adapter: ModelAdapter) -> ModelInfo:
        availability = self._availability(adapter)
        details_fn = getattr(adapter, "details", None)
        details: dict[str, Any] = {}
        if callable(details_fn):
            try:
                details = dict(details_fn())
            except Exception:
                details = {}
        return ModelInfo(
            name=adapter.name,
            task=adapter.task,
            description=adapter.description,
            available=availability.available,
            reason=availability.reason,
            test_model=adapter.test_model,
            source=getattr(adapter, "source", None),
            details=details,
        )


def resident_bytes() -> int:
    """This process's resident set size in bytes (Linux /proc; elsewhere the peak, which never goes down)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def trim_memory() -> None:
    """Collect garbage and ask glibc to hand freed heap pages back to the system."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def build_default_registry(settings: Settings, apps: Iterable[AppManifest] | None = None) -> ModelRegistry:
    """The registry with the model adapters of `apps` (default: every installed application), configured
    from `settings`."""
    from reelforge.applications import discover

    registry = ModelRegistry()
    for application in discover() if apps is None else apps:
        for adapter in application.models(settings):
            registry.register(adapter)
    return registry
