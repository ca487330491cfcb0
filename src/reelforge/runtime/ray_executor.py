"""The Ray executor (settings ``worker.executor: ray``): a worker's steps run as tasks on a Ray cluster.

- **Resources.** Each step is a Ray task asking for what the step declares: ``num_cpus=cpu``, ``num_gpus=gpu``,
  ``memory=memory_mb`` MiB. Ray places it on a node where that fits (spread across the cluster), so a Map's items
  fan out over every node while the worker process only orchestrates. A request larger than the whole cluster is
  refused up front (``resources_ok``: the runner fails the step with ``resources_unavailable``).
- **Model actors.** In a Ray task, ``ctx.services.models.run(task, name, ...)`` goes to one actor per model adapter
  (named ``reelforge-model:<task>/<name>``, shared by every step and every worker of the cluster): it loads the
  weights once and keeps them between tasks, and unloads them after ``models.idle_unload_s`` without use. The
  actor reserves nothing itself: the step that calls it holds the CPU/GPU reservation while it waits.
- **The step's world.** A Ray worker process builds the platform's services once (database, object store,
  applications) from the worker's settings, so steps read and write assets as they do in a thread. Progress
  reports and stop signals (cancel, timeout, sibling failure, preemption) travel through a small signals actor,
  every ``worker.ray.signal_interval_s``.
- **Failures.** Ray does not retry anything (``max_retries=0``): a Ray worker process that dies (killed, out of
  memory, its node lost) fails the step with ``transient_error``, and the platform's own step retries, job
  retries, leases and checkpoints take over, so map items already checkpointed are not run again and nothing
  runs twice within one attempt. Errors raised by a step come back as themselves (same class, code and details).
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from reelforge.domain.pipeline import Resources
from reelforge.errors import JobCancelled, ReelforgeError, TransientError
from reelforge.runtime.context import Preempted, StepContext

log = logging.getLogger("reelforge.ray")

T = TypeVar("T")

MODEL_ACTOR_PREFIX = "reelforge-model:"


class RayWorkerLost(TransientError):
    """The Ray worker process running a step died (killed, out of memory, node lost)."""

    code, title = "transient_error", "Step worker lost"


def ray_init(settings: Any) -> None:
    """Connect to the configured cluster, or start a local one on loopback; a no-op when already connected."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    r = settings.worker.ray
    if r.address:
        ray.init(address=r.address, namespace=r.namespace, log_to_driver=False)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's worker processes import step functions by module: give them the driver's folder, as its own sys.path has.
    here = os.getcwd()
    path = os.environ.get("PYTHONPATH", "")
    if here not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = here + (os.pathsep + path if path else "")
    ray.init(num_cpus=r.num_cpus, num_gpus=r.num_gpus, namespace=r.namespace, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)


# --- what runs on the cluster ----------------------------------------------------------------------------------

_ENV_LOCK = threading.Lock()
_ENVS: dict[bytes, Any] = {}


def _services(settings: Any) -> Any:
    """The platform's services in this Ray worker process, built once per settings."""
    key = pickle.dumps(settings)
    with _ENV_LOCK:
        env = _ENVS.get(key)
        if env is None:
            from reelforge.container import Container
            from reelforge.runtime.worker import StepServices, _app_services
            from reelforge.services.metering import MeteredModels

            c = Container(settings)
            wid = f"ray:{os.uname().nodename}:{os.getpid()}"
            models = MeteredModels(RayModels(c.models, settings), c.store, worker_id=wid)
            env = StepServices(settings=settings, models=models, assets=c.assets, objects=c.objects, store=c.store,
                               apps=_app_services(c), media=c.media)
            _ENVS[key] = env
        return env


class _RemoteSignals:
    """A Ray task's view of its step's stop flag and progress, through the signals actor."""

    def __init__(self, signals: Any, token: str, interval_s: float) -> None:
        self.signals, self.token, self.interval_s = signals, token, interval_s
        self.stop: str | None = None
        self.read_at = 0.0
        self.sent_at = 0.0
        self.last: tuple[float, str] | None = None  # the latest report, sent back with the result too

    def reason(self) -> str | None:
        import ray

        now = time.monotonic()
        if self.stop is None and now - self.read_at >= self.interval_s:
            self.read_at = now
            self.stop = ray.get(self.signals.stopped.remote(self.token))
        return self.stop

    def progress(self, _path: str, fraction: float, message: str) -> None:
        self.last = (fraction, message)
        now = time.monotonic()
        if fraction >= 1.0 or now - self.sent_at >= self.interval_s:
            self.sent_at = now
            self.signals.report.remote(self.token, fraction, message)


def run_step(fn: Callable[[Any, Any], Any], snap: dict[str, Any], data: Any, settings: Any, signals: Any,
             token: str) -> tuple[str, Any, tuple[float, str] | None]:
    """The body of a step's Ray task: ``("ok", output, last progress report)`` or ``("error", pickled exception,
    last report)``."""
    remote = _RemoteSignals(signals, token, float(settings.worker.ray.signal_interval_s))
    try:
        ctx = StepContext(job_id=snap["job_id"], owner_id=snap["owner_id"], kind=snap["kind"],
                          attempt=snap["attempt"], path=snap["path"], job_input=snap["job_input"],
                          services=_services(settings), on_progress=remote.progress,
                          cancelled=lambda: remote.reason() is not None,
                          preempted=lambda: remote.reason() == "preempted")
        ctx.bind_runner(step_attempt=snap["step_attempt"], stop_requested=lambda: False, wake=threading.Event(),
                        resources=Resources(**snap["resources"]) if snap.get("resources") else None)
        ctx.ray_node = os.uname().nodename  # type: ignore[attr-defined]
        return "ok", fn(ctx, data), remote.last
    except BaseException as exc:
        return "error", _pack(exc), remote.last


def run_plain(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any, None]:
    """A plain callable (an interactive call) as a Ray task."""
    try:
        return "ok", fn(*args), None
    except BaseException as exc:
        return "error", _pack(exc), None


def _pack(exc: BaseException) -> bytes:
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
        return blob
    except Exception:
        name = exc.code if isinstance(exc, ReelforgeError) else type(exc).__name__
        return pickle.dumps(ReelforgeError(str(exc) or type(exc).__name__, code=name))


class SignalsActor:
    """Stop flags and progress reports between a worker and its Ray tasks."""

    def __init__(self) -> None:
        self.stops: dict[str, str] = {}
        self.reports: dict[str, tuple[float, str]] = {}

    def stop(self, token: str, reason: str) -> None:
        self.stops[token] = reason

    def stopped(self, token: str) -> str | None:
        return self.stops.get(token)

    def report(self, token: str, fraction: float, message: str) -> None:
        self.reports[token] = (fraction, message)

    def drain(self) -> dict[str, tuple[float, str]]:
        out, self.reports = self.reports, {}
        return out

    def forget(self, tokens: list[str]) -> None:
        for t in tokens:
            self.stops.pop(t, None)
            self.reports.pop(t, None)


class ModelActor:
    """One model adapter, loaded once and kept between tasks (unloaded after `models.idle_unload_s` idle)."""

    def __init__(self, settings: Any, task: str, name: str) -> None:
        from reelforge.adapters.models.registry import build_default_registry

        self.task, self.name = task, name
        self.registry = build_default_registry(settings)
        self.pid = os.getpid()
        idle = float(settings.models.idle_unload_s or 0)
        if idle > 0:
            def unload() -> None:
                while True:
                    time.sleep(max(0.05, min(idle / 2, 5.0)))
                    for u in self.registry.unload_idle(idle):
                        log.info("model actor unloaded %s: %d bytes freed", u["model"], u["freed_bytes"])

            threading.Thread(target=unload, daemon=True).start()

    def ensure_ready(self) -> int:
        self.registry.ensure_ready(self.task, self.name)
        return self.pid

    def run(self, request: Any) -> Any:
        return self.registry.run(self.task, self.name, request)

    def stats(self) -> dict[str, Any]:
        return {**self.registry.stats()[f"{self.task}/{self.name}"], "pid": self.pid}


class RayModels:
    """The model registry as a step on Ray sees it: listings from this process's registry (nothing loaded here),
    loads and runs in the model's actor."""

    def __init__(self, registry: Any, settings: Any) -> None:
        self._registry = registry
        self._settings = settings
        self._actors: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def actor(self, task: str, name: str) -> Any:
        import ray

        self._registry.get(task, name)  # NotFound for an unknown model, before any actor starts
        key = f"{task}/{name}"
        with self._lock:
            handle = self._actors.get(key)
            if handle is None:
                handle = ray.remote(ModelActor).options(
                    name=MODEL_ACTOR_PREFIX + key, namespace=self._settings.worker.ray.namespace,
                    get_if_exists=True, lifetime="detached", num_cpus=0, max_concurrency=8, max_restarts=-1,
                ).remote(self._settings, task, name)
                self._actors[key] = handle
        return handle

    def ensure_ready(self, task: str, name: str) -> Any:
        import ray

        ray.get(self.actor(task, name).ensure_ready.remote())
        return self._registry.get(task, name)

    def run(self, task: str, name: str, request: Any, *, progress: Any = None, cancelled: Any = None) -> Any:
        import ray

        if cancelled is not None and cancelled():
            raise JobCancelled("stopped before the model ran")
        return ray.get(self.actor(task, name).run.remote(request))

    def record_invocation(self, *args: Any, **kwargs: Any) -> None:
        pass  # the actor's registry counts its own runs

    def stats(self) -> dict[str, dict[str, Any]]:
        import ray

        out = dict(self._registry.stats())
        with self._lock:
            actors = dict(self._actors)
        for key, handle in actors.items():
            try:
                out[key] = ray.get(handle.stats.remote(), timeout=10)
            except Exception:
                log.debug("no stats from model actor %s", key, exc_info=True)
        return out


# --- the executor, in the worker process --------------------------------------------------------------------


@dataclass
class _InFlight:
    future: Future[Any]
    ctx: StepContext | None
    token: str
    stop_sent: bool = False


class RayExecutor:
    """Runs task functions on a Ray cluster; see the module docstring."""

    def __init__(self, settings: Any) -> None:
        import ray

        ray_init(settings)
        self.settings = settings
        self.interval_s = float(settings.worker.ray.signal_interval_s)
        self.capacity = ray.cluster_resources()
        self._signals: Any = ray.remote(SignalsActor).options(num_cpus=0, max_concurrency=64).remote()
        self._step: Any = ray.remote(run_step)
        self._plain: Any = ray.remote(run_plain)
        self._lock = threading.Lock()
        self._inflight: dict[Any, _InFlight] = {}  # ObjectRef -> what waits for it
        self._closed = threading.Event()
        self._pump = threading.Thread(target=self._run_pump, name="reelforge-ray", daemon=True)
        self._pump.start()

    def resources_ok(self, res: Resources) -> bool:
        cap = self.capacity
        return (res.cpu <= cap.get("CPU", 0) and res.gpu <= cap.get("GPU", 0)
                and res.memory_mb * 2**20 <= cap.get("memory", float("inf")))

    def _options(self, res: Resources | None) -> dict[str, Any]:
        opts: dict[str, Any] = {"max_retries": 0, "retry_exceptions": False, "scheduling_strategy": "SPREAD"}
        if res is not None:
            opts.update(num_cpus=res.cpu, num_gpus=res.gpu)
            if res.memory_mb:
                opts["memory"] = int(res.memory_mb) * 2**20
        return opts

    def submit(self, fn: Callable[..., T], /, *args: Any, resources: Resources | None = None) -> Future[T]:
        if self._closed.is_set():
            raise RuntimeError("the Ray executor is shut down")
        fut: Future[T] = Future()
        fut.set_running_or_notify_cancel()
        token = uuid.uuid4().hex
        step_fn = getattr(fn, "reelforge_step", None)
        ctx = args[0] if args and isinstance(args[0], StepContext) else None
        opts = self._options(resources)
        if step_fn is not None and ctx is not None:
            snap = {"job_id": ctx.job_id, "owner_id": ctx.owner_id, "kind": ctx.kind, "attempt": ctx.attempt,
                    "path": ctx.path, "job_input": ctx.job_input, "step_attempt": ctx.step_attempt,
                    "resources": resources.to_dict() if resources is not None else None}
            ref: Any = self._step.options(**opts).remote(step_fn, snap, args[1], self.settings, self._signals, token)
            started = getattr(fn, "reelforge_started", None)
            if started is not None:
                started()  # the step's timeout runs from here (queueing on the cluster included)
        else:
            ref = self._plain.options(**opts).remote(fn, args)
        with self._lock:
            self._inflight[ref] = _InFlight(fut, ctx, token)
        return fut

    def _run_pump(self) -> None:
        import ray

        while not self._closed.is_set():
            with self._lock:
                refs = list(self._inflight)
            if not refs:
                self._closed.wait(self.interval_s / 4)
                continue
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.interval_s / 2, fetch_local=True)
            try:
                self._signal()  # before the results: a finished step's reports still find its context
            except Exception:
                log.warning("could not exchange signals with Ray tasks", exc_info=True)
            for ref in done:
                self._finish(ref)

    def _signal(self) -> None:
        import ray

        with self._lock:
            live = list(self._inflight.values())
        for f in live:
            if f.ctx is not None and not f.stop_sent and f.ctx.stopping():
                preempted = getattr(f.ctx, "_preempted", None)
                reason = "preempted" if preempted is not None and preempted() else "stopped"
                self._signals.stop.remote(f.token, reason)
                f.stop_sent = True
        reports: dict[str, tuple[float, str]] = ray.get(self._signals.drain.remote())
        if reports:
            by_token = {f.token: f for f in live}
            for token, (fraction, message) in reports.items():
                held = by_token.get(token)
                if held is not None and held.ctx is not None:
                    held.ctx.progress(fraction, message)

    def _finish(self, ref: Any) -> None:
        import ray

        with self._lock:
            f = self._inflight.pop(ref, None)
        if f is None:
            return
        try:
            status, value, last = ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.OutOfMemoryError, ray.exceptions.TaskCancelledError,
                ray.exceptions.ActorDiedError) as exc:
            log.warning("a Ray worker running a step died: %s", type(exc).__name__)
            f.future.set_exception(RayWorkerLost(f"the Ray worker running the step died ({type(exc).__name__})"))
            return
        except Exception as exc:
            f.future.set_exception(RayWorkerLost(f"the step's Ray task failed: {type(exc).__name__}"))
            return
        finally:
            try:
                self._signals.forget.remote([f.token])
            except Exception:
                pass
        if last is not None and f.ctx is not None:
            f.ctx.progress(*last)
        if status == "ok":
            f.future.set_result(value)
        else:
            error: BaseException = pickle.loads(value)
            if isinstance(error, JobCancelled) and f.ctx is not None and getattr(f.ctx, "_preempted", lambda: False)():
                error = Preempted(error.message)
            f.future.set_exception(error)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the pump; steps still on the cluster are cancelled and their futures fail."""
        import ray

        self._closed.set()
        self._pump.join(timeout=5)
        with self._lock:
            left, self._inflight = self._inflight, {}
        for ref, held in left.items():
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
            if not held.future.done():
                held.future.set_exception(JobCancelled("the worker's executor shut down"))

    def model_actor_stats(self, task: str, name: str) -> dict[str, Any]:
        """The stats of a model's actor (loads, invocations, its pid), for tests and benchmarks."""
        import ray

        handle = ray.get_actor(MODEL_ACTOR_PREFIX + f"{task}/{name}", namespace=self.settings.worker.ray.namespace)
        return dict(ray.get(handle.stats.remote()))
