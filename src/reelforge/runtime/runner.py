"""The durable step runner: interprets a :class:`~reelforge.domain.pipeline.Pipeline` graph.

Durability comes from checkpoints: after every Task, Parallel, Map, branch and map item finishes, its
JSON output is written to the :class:`CheckpointStore` before the execution moves on. Running the
same pipeline again with the same store (the job's next attempt after a crash) replays the graph:
checkpointed states are skipped with their stored output, so the execution resumes at the first
unfinished step. Replay is deterministic because every state's input is either the execution input
or a checkpointed output, and Choice conditions are pure.

Step paths name every executed state uniquely::

    generate                      top-level state
    analyze/branch[0]/ocr         state "ocr" in branch 0 of Parallel "analyze"
    chunks/item[3]/encode         state "encode" for item 3 of Map "chunks"
    chunks, chunks/item[3]        the composite state and one item (their outputs are checkpointed too)
    poll#2                        the second visit of "poll" in a loop
    reserve!catch                 record of a caught error: {"error", "cause", "next", "output"}
    $execution                    marker written when an execution first starts

Concurrency: Parallel branches and Map items are orchestrated in plain threads owned by the runner;
only leaf task functions go to the :class:`~reelforge.runtime.executors.Executor`, so a bounded
executor can never deadlock on nested composites.

The engine knows nothing of databases or HTTP: the worker supplies the store, the context factory and
the cancellation probe.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Protocol

from reelforge.domain.pipeline import (
    NO_CHOICE_MATCHED,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    Choice,
    Fail,
    Graph,
    Map,
    Parallel,
    Pass,
    Pipeline,
    State,
    Succeed,
    Task,
    parse_result_path,
)
from reelforge.errors import JobCancelled, ReelforgeError, StaleLease, StepTimeout, scrub
from reelforge.runtime.context import Preempted, ProgressCallback, StepContext
from reelforge.runtime.executors import Executor, ResourcesUnavailable

__all__ = [
    "CATCH_SUFFIX",
    "EXECUTION_MARKER",
    "HISTORY_EVENTS",
    "CheckpointStore",
    "PipelineFailed",
    "StateFailed",
    "StepOutputError",
    "StepRunner",
    "error_cause",
    "error_name",
]

_log = logging.getLogger(__name__)

EXECUTION_MARKER = "$execution"
CATCH_SUFFIX = "!catch"

HISTORY_EVENTS = (
    "ExecutionStarted",
    "ExecutionResumed",
    "ExecutionSucceeded",
    "ExecutionFailed",
    "ExecutionAborted",  # cancelled (JobCancelled); a StaleLease records nothing: its writes are refused
    "TaskStateEntered",
    "TaskSucceeded",
    "TaskFailed",
    "TaskAborted",  # a step stopped because the job was cancelled or a sibling branch/item failed
    "TaskRetryScheduled",
    "TaskCaught",
    "TaskSkipped",  # checkpoint hit (any checkpointed state type, see details["type"])
    "ParallelStateEntered",
    "ParallelStateExited",
    "ParallelStateFailed",
    "MapStateEntered",
    "MapIterationStarted",
    "MapIterationSucceeded",
    "MapIterationFailed",
    "MapStateExited",
    "MapStateFailed",
    "ChoiceStateEntered",
    "PassStateEntered",
    "SucceedStateEntered",
    "FailStateEntered",
)

# Map with max_concurrency=0 ("unbounded") still needs a thread per running item; beyond this many,
# items queue. The executor bounds the actual work anyway.
DEFAULT_MAX_MAP_THREADS = 64

# How often waiting code re-checks stop signals it cannot be woken by directly.
_POLL_S = 0.05
_CANCEL_POLL_S = 0.5


class CheckpointStore(Protocol):
    """Durable step outputs and the execution history of one job (the worker implements it on the DB)."""

    def get(self, path: str) -> tuple[bool, Any]:
        """``(found, output)`` for a step path."""
        ...

    def put(self, path: str, output: Any) -> None:
        """Store a step output; durable before returning. May raise :class:`StaleLease`."""
        ...

    def history(self, event: str, path: str | None, **details: Any) -> None:
        """Append one execution-history event (see :data:`HISTORY_EVENTS`)."""
        ...


class PipelineFailed(ReelforgeError):
    """The execution failed. ``code`` is the failing error name, ``message`` its cause.

    ``retryable`` is copied from the original exception when it is a ReelforgeError (False
    otherwise); the original is ``__cause__``; ``path`` is the step where the error arose.
    """

    status, code, title = 500, "pipeline_failed", "Pipeline failed"

    def __init__(self, error: str, cause: str, *, path: str | None = None, retryable: bool = False) -> None:
        super().__init__(cause, code=error, path=path)
        self.error = error
        self.cause = cause
        self.path = path
        self.retryable = retryable


class StateFailed(ReelforgeError):
    """An error named by the graph itself: a Fail state, or an ASL intrinsic error
    (``States.NoChoiceMatched``, ``States.ResultPathMatchFailure``, ``States.Runtime``)."""

    status, code, title = 500, "States.TaskFailed", "State failed"

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(cause or error, code=error)


class StepOutputError(TypeError):
    """A step's output (or the pipeline input) is not JSON-serializable.

    Its error name is ``States.Runtime``, which ``States.ALL`` does not match (ASL), so a programming
    error is not retried.
    """

    code = RUNTIME


class _Stopped(Exception):
    """Internal: this branch/item stopped because its scope was stopped (a sibling failed or the
    execution aborted). Never retried, caught or reported as the execution's error."""


def error_name(exc: BaseException) -> str:
    """The ASL error name of an exception: ``code`` for ReelforgeError, else the class name."""
    if isinstance(exc, ReelforgeError):
        return exc.code
    if isinstance(exc, StepOutputError):
        return RUNTIME
    return type(exc).__name__


def error_cause(exc: BaseException) -> str:
    """A human-readable cause for an exception, as the execution history shows it to the job's owner: without
    filesystem paths or raw errno values."""
    if isinstance(exc, ReelforgeError):
        return scrub(exc.message)
    return scrub(str(exc)) or type(exc).__name__


def _to_json(what: str, value: Any) -> Any:
    """Round-trip through JSON so that the first run sees exactly what a resumed run will read back
    (tuples become lists, int keys become strings), and fail early on what the DB cannot store."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StepOutputError(f"{what} is not JSON-serializable: {exc}") from exc
    return json.loads(text)


def _apply_result_path(data: Any, result_path: str | None, result: Any) -> Any:
    """ASL ResultPath: place ``result`` into (a copy of) ``data``."""
    if result_path is None:
        return data
    keys = parse_result_path(result_path)
    if not keys:
        return result
    out = copy.deepcopy(data)
    node = out
    for key in keys[:-1]:
        if not isinstance(node, dict):
            raise StateFailed(RESULT_PATH_MATCH_FAILURE, f"cannot set {result_path} on a non-object input")
        node = node.setdefault(key, {})
    if not isinstance(node, dict):
        raise StateFailed(RESULT_PATH_MATCH_FAILURE, f"cannot set {result_path} on a non-object input")
    node[keys[-1]] = result
    return out


def _tag(exc: BaseException, path: str) -> None:
    """Remember the innermost step where an error arose (for PipelineFailed.path)."""
    if getattr(exc, "_reelforge_path", None) is None:
        try:
            exc._reelforge_path = path  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass


class _Clock:
    """The execution's times: wall-clock seconds derived from one monotonic reading, so that an event's `at` and
    a step's `duration_s` come from the same clock and agree (`at` of the end minus `at` of the start is the
    duration, to the microsecond) whatever the wall clock does meanwhile."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.wall0 = now()
        self.mono0 = time.monotonic()

    def at(self, mono: float) -> float:
        return round(self.wall0 + (mono - self.mono0), 6)


class _History:
    """The checkpoint store's history, each event stamped with `at`: when it happened, not when it is written
    (events are buffered and written with the next checkpoint, so for a branch or a map item the write can come
    long after). ``_t`` is the monotonic reading to stamp (default: now)."""

    def __init__(self, store: CheckpointStore, clock: _Clock) -> None:
        self.store = store
        self.clock = clock

    def __call__(self, event: str, path: str | None, *, _t: float | None = None, **details: Any) -> None:
        details["at"] = self.clock.at(time.monotonic() if _t is None else _t)
        self.store.history(event, path, **details)


def _span(t0: float) -> tuple[float, float]:
    """(now, seconds since t0) from one monotonic reading: the end event's `_t` and its `duration_s`."""
    t1 = time.monotonic()
    return t1, round(t1 - t0, 6)


class _Scope:
    """A stop signal for a group of concurrently running branches/items, chained to its parent.

    The root scope is the execution: aborting it (cancellation, lost lease) stops everything.
    """

    def __init__(self, parent: _Scope | None = None) -> None:
        self.parent = parent
        self.root: _Scope = parent.root if parent is not None else self
        self.event = threading.Event()
        self.abort_error: BaseException | None = None

    def stop(self) -> None:
        self.event.set()

    def stopped(self) -> bool:
        scope: _Scope | None = self
        while scope is not None:
            if scope.event.is_set():
                return True
            scope = scope.parent
        return False

    def abort(self, exc: BaseException) -> None:
        root = self.root
        if root.abort_error is None:
            root.abort_error = exc
        root.event.set()

    @property
    def aborted(self) -> bool:
        return self.root.event.is_set()


class StepRunner:
    """Runs pipelines step by step with checkpoints, retries, catchers and history.

    - ``executor`` runs leaf task functions (never closed by the runner).
    - ``checkpoints`` stores outputs and history of the job being run.
    - ``make_context(path)`` builds the :class:`StepContext` for one step execution.
    - ``cancelled()`` says whether the job was cancelled; polled between steps and while waiting.
    - ``sleep(seconds)`` waits between retries. With the default ``time.sleep`` the runner uses its own
      interruptible wait instead, so a cancel does not have to sit out a long backoff.
    - ``rng`` draws FULL jitter.
    - ``on_progress(path, fraction, message)`` is attached to contexts that have no progress callback.
    - ``clock()`` is the wall clock that history events' ``at`` is read from (the worker aligns it with the
      database's).

    One runner may run several executions at once; per-execution state lives in ``_Execution``.
    """

    def __init__(
        self,
        executor: Executor,
        checkpoints: CheckpointStore,
        make_context: Callable[[str], StepContext],
        cancelled: Callable[[], bool],
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        max_map_threads: int = DEFAULT_MAX_MAP_THREADS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_map_threads < 1:
            raise ValueError("max_map_threads must be >= 1")
        self.executor = executor
        self.checkpoints = checkpoints
        self.make_context = make_context
        self.cancelled = cancelled
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()
        self.on_progress = on_progress
        self.max_map_threads = max_map_threads
        self.clock = clock

    def run(self, pipeline: Pipeline, data: Any) -> Any:
        """Run (or resume) ``pipeline`` on ``data`` and return the output of its last state.

        Raises :class:`PipelineFailed` when the execution fails, :class:`JobCancelled` when it was
        cancelled and :class:`StaleLease` when a checkpoint write was refused; any BaseException that
        is not an Exception (a simulated crash, KeyboardInterrupt) passes through untouched.
        """
        return _Execution(self, pipeline).run(data)


class _Execution:
    """One run of one pipeline."""

    def __init__(self, runner: StepRunner, pipeline: Pipeline) -> None:
        self.r = runner
        self.pipeline = pipeline
        self.store = runner.checkpoints
        self.h = _History(runner.checkpoints, _Clock(runner.clock))
        self.root = _Scope()

    # -- execution ---------------------------------------------------------------------------------

    def run(self, data: Any) -> Any:
        p = self.pipeline
        data = _to_json(f"input of pipeline {p.kind!r}", data)
        t0 = time.monotonic()
        found, marker = self.store.get(EXECUTION_MARKER)
        if found:
            self.h("ExecutionResumed", None, kind=p.kind, version=p.version, first=marker, _t=t0)
        else:
            self.store.put(EXECUTION_MARKER, {"kind": p.kind, "version": p.version})
            self.h("ExecutionStarted", None, kind=p.kind, version=p.version, _t=t0)
        try:
            try:
                out = self._run_graph(p.graph, data, "", self.root)
            except _Stopped:
                # Only reachable if the root was aborted; surface the error that aborted it.
                if self.root.abort_error is not None:
                    raise self.root.abort_error from None
                raise
        except StaleLease:
            raise  # fenced off: another worker owns the job now, and our history writes would be refused
        except JobCancelled as exc:
            t1, took = _span(t0)
            self.h("ExecutionAborted", None, error=exc.code, cause=exc.message, duration_s=took, _t=t1)
            raise
        except Exception as exc:
            name, cause = error_name(exc), error_cause(exc)
            path = getattr(exc, "_reelforge_path", None)
            t1, took = _span(t0)
            self.h("ExecutionFailed", None, error=name, cause=cause, step=path, duration_s=took, _t=t1)
            # Errors we know are typed (ReelforgeError says); anything else may be transient (a network
            # blip inside a library) and is retried at the job level, except our own output-contract error.
            if isinstance(exc, ReelforgeError):
                retryable = exc.retryable
            else:
                retryable = not isinstance(exc, StepOutputError)
            raise PipelineFailed(name, cause, path=path, retryable=retryable) from exc
        t1, took = _span(t0)
        self.h("ExecutionSucceeded", None, duration_s=took, _t=t1)
        return out

    def _between_steps(self, scope: _Scope) -> None:
        """Stop here if a sibling failed, the execution aborted or the job was cancelled."""
        if scope.stopped():
            raise _Stopped()
        if self.r.cancelled():
            exc = JobCancelled("job cancelled")
            scope.abort(exc)
            raise exc

    def _run_graph(self, graph: Graph, data: Any, prefix: str, scope: _Scope) -> Any:
        visits: dict[str, int] = {}
        name: str | None = graph.start_at
        while name is not None:
            self._between_steps(scope)
            state = graph.state(name)
            visits[name] = n = visits.get(name, 0) + 1
            label = name if n == 1 else f"{name}#{n}"
            path = f"{prefix}/{label}" if prefix else label
            data, name = self._run_state(state, path, data, scope)
        return data

    def _run_state(self, state: State, path: str, data: Any, scope: _Scope) -> tuple[Any, str | None]:
        """Run one state; return ``(output, next state name or None at the end)``."""
        h = self.h
        if isinstance(state, Pass):
            h("PassStateEntered", path)
            out = data if state.result is None else _to_json(f"result of Pass state {path!r}", state.result)
            return out, None if state.end else state.next
        if isinstance(state, Choice):
            nxt = next((rule.next for rule in state.choices if rule.condition(data)), state.default)
            h("ChoiceStateEntered", path, next=nxt)
            if nxt is None:
                exc = StateFailed(NO_CHOICE_MATCHED, f"no rule of Choice state {path!r} matched")
                _tag(exc, path)
                raise exc
            return data, nxt
        if isinstance(state, Succeed):
            h("SucceedStateEntered", path)
            return data, None
        if isinstance(state, Fail):
            h("FailStateEntered", path, error=state.error, cause=state.cause)
            exc = StateFailed(state.error, state.cause)
            _tag(exc, path)
            raise exc
        return self._run_durable(state, path, data, scope)

    # -- checkpointed states with Retry/Catch --------------------------------------------------------

    def _run_durable(self, state: Task | Parallel | Map, path: str, data: Any,
                     scope: _Scope) -> tuple[Any, str | None]:
        kind = type(state).__name__
        normal_next = None if state.end else state.next
        found, out = self.store.get(path)
        if found:
            self.h("TaskSkipped", path, type=kind)
            return out, normal_next
        if state.catch:
            # A caught error is recorded in one write with its route, so a resumed run takes the
            # catcher's branch again instead of re-running the failed state.
            found, rec = self.store.get(path + CATCH_SUFFIX)
            if found:
                self.h("TaskSkipped", path, type=kind, caught=rec["error"], next=rec["next"])
                return rec["output"], rec["next"]

        retries_used = [0] * len(state.retry)  # ASL: each retrier counts its own attempts
        attempt = 1
        while True:
            try:
                return self._attempt(state, path, data, scope, attempt), normal_next
            except (JobCancelled, StaleLease) as exc:
                scope.abort(exc)
                raise
            except _Stopped:
                raise
            except Exception as exc:
                _tag(exc, path)
                name, cause = error_name(exc), error_cause(exc)
                idx = next((i for i, r in enumerate(state.retry) if r.matches(name)), None)
                if idx is not None and retries_used[idx] < state.retry[idx].max_attempts:
                    retries_used[idx] += 1
                    delay = state.retry[idx].delay(retries_used[idx], self.r.rng)
                    self.h("TaskRetryScheduled", path, error=name, cause=cause, attempt=attempt,
                                       retrier=idx, retry=retries_used[idx], delay_s=delay)
                    _log.info("step %s failed with %s; retry %d in %.3fs", path, name,
                              retries_used[idx], delay)
                    self._sleep(delay, scope)
                    attempt += 1
                    continue
                catcher = next((c for c in state.catch if c.matches(name)), None)
                if catcher is None:
                    raise
                output = _to_json(f"output of caught state {path!r}",
                                  _apply_result_path(data, catcher.result_path,
                                                     {"error": name, "cause": cause}))
                self.store.put(path + CATCH_SUFFIX,
                               {"error": name, "cause": cause, "next": catcher.next, "output": output})
                self.h("TaskCaught", path, error=name, cause=cause, next=catcher.next)
                return output, catcher.next

    def _sleep(self, seconds: float, scope: _Scope) -> None:
        self._between_steps(scope)
        if self.r.sleep is time.sleep:
            deadline = time.monotonic() + seconds
            last_cancel_check = time.monotonic()
            while (remaining := deadline - time.monotonic()) > 0:
                scope.root.event.wait(min(remaining, _POLL_S))
                if scope.stopped():
                    raise _Stopped()
                if time.monotonic() - last_cancel_check >= _CANCEL_POLL_S:
                    last_cancel_check = time.monotonic()
                    self._between_steps(scope)
        else:
            self.r.sleep(seconds)
        self._between_steps(scope)

    def _attempt(self, state: Task | Parallel | Map, path: str, data: Any, scope: _Scope,
                 attempt: int) -> Any:
        if isinstance(state, Task):
            return self._attempt_task(state, path, data, scope, attempt)
        if isinstance(state, Parallel):
            return self._attempt_parallel(state, path, data, scope, attempt)
        return self._attempt_map(state, path, data, scope, attempt)

    # -- Task ---------------------------------------------------------------------------------------

    def _attempt_task(self, state: Task, path: str, data: Any, scope: _Scope, attempt: int) -> Any:
        h = self.h
        t0 = time.monotonic()
        h("TaskStateEntered", path, attempt=attempt, fn=state.fn_ref, resources=state.resources.to_dict(), _t=t0)
        try:
            if not self.r.executor.resources_ok(state.resources):
                raise ResourcesUnavailable(f"step {path} needs {state.resources.to_dict()}, "
                                           "more than this executor provides")
            out = _to_json(f"output of step {path!r}", self._execute(state, path, data, scope, attempt))
        except _Stopped:
            t1, took = _span(t0)
            h("TaskAborted", path, attempt=attempt, duration_s=took, _t=t1)
            raise
        except JobCancelled as exc:
            t1, took = _span(t0)
            h("TaskAborted", path, attempt=attempt, error=exc.code, duration_s=took, _t=t1)
            if scope.stopped():
                # The step noticed our stop signal (sibling failure or abort), not a cancel of its own.
                raise _Stopped() from exc
            raise
        except Exception as exc:
            t1, took = _span(t0)
            h("TaskFailed", path, attempt=attempt, error=error_name(exc), cause=error_cause(exc),
              duration_s=took, _t=t1)
            raise
        t1, took = _span(t0)  # the step's end: before its checkpoint is written
        defer = getattr(self.store, "defer", None)
        if state.end and "/" not in path and defer is not None:
            # the root graph's last Task: its output goes straight into the final transition, so its
            # checkpoint is written in that same transaction instead of one of its own.
            defer(path, out)
        else:
            self.store.put(path, out)
        h("TaskSucceeded", path, attempt=attempt, duration_s=took, _t=t1)
        return out

    def _execute(self, state: Task, path: str, data: Any, scope: _Scope, attempt: int) -> Any:
        ctx = self.r.make_context(path)
        wake = threading.Event()
        ctx.bind_runner(step_attempt=attempt, stop_requested=scope.stopped, wake=wake,
                        on_progress=self.r.on_progress, resources=state.resources)
        started = threading.Event()
        started_at = [0.0]

        def mark_started() -> None:
            started_at[0] = time.monotonic()
            started.set()

        def call(c: StepContext, d: Any) -> Any:
            mark_started()
            return state.fn(c, d)

        # An executor that runs steps in another process (Ray) ships the step function itself, not this closure,
        # and says when it started it.
        call.reelforge_step = state.fn  # type: ignore[attr-defined]
        call.reelforge_started = mark_started  # type: ignore[attr-defined]

        # The step gets its own copy of the input: a function that mutates it must not change what a
        # retry, a catcher or a sibling branch sees.
        fut: Future[Any] = self.r.executor.submit(call, ctx, copy.deepcopy(data), resources=state.resources)
        fut.add_done_callback(lambda _f: started.set())
        # The timeout runs from the moment the step starts, not while it queues for an executor slot.
        while not started.wait(_POLL_S):
            if scope.stopped() and fut.cancel():
                raise _Stopped()
        if state.timeout_s is None:
            return self._result(fut, ctx)
        remaining = state.timeout_s - (time.monotonic() - (started_at[0] or time.monotonic()))
        done, _ = wait_futures([fut], timeout=max(0.0, remaining))
        if not done:
            # A thread cannot be killed: the step keeps running until it returns, and its result is
            # discarded. Setting `wake` makes ctx.check_cancelled()/ctx.sleep() raise in a cooperative
            # step so the executor slot comes back soon.
            wake.set()
            raise StepTimeout(f"step {path} did not finish within {state.timeout_s:g}s", path=path)
        return self._result(fut, ctx)

    @staticmethod
    def _result(fut: Future[Any], ctx: StepContext) -> Any:
        """The step's output; a stop raised by code that knows only JobCancelled (a model adapter's cancel probe)
        while the worker is preempted is reported as the preemption it is."""
        try:
            return fut.result()
        except JobCancelled as exc:
            if ctx.preempted() and not isinstance(exc, Preempted):
                raise Preempted(exc.message) from exc
            raise

    # -- Parallel and Map -----------------------------------------------------------------------------

    def _attempt_parallel(self, state: Parallel, path: str, data: Any, scope: _Scope, attempt: int) -> Any:
        h = self.h
        t0 = time.monotonic()
        h("ParallelStateEntered", path, attempt=attempt, branches=len(state.branches), _t=t0)
        child = _Scope(scope)

        def branch_job(i: int, branch: Graph) -> Callable[[], Any]:
            def job() -> Any:
                bpath = f"{path}/branch[{i}]"
                found, out = self.store.get(bpath)
                if found:
                    return out
                out = self._run_graph(branch, copy.deepcopy(data), bpath, child)
                self.store.put(bpath, out)
                return out
            return job

        jobs = [branch_job(i, b) for i, b in enumerate(state.branches)]
        try:
            outs = self._fan_out(jobs, len(jobs), child, path)
        except (_Stopped, JobCancelled, StaleLease):
            raise
        except Exception as exc:
            t1, took = _span(t0)
            h("ParallelStateFailed", path, attempt=attempt, error=error_name(exc), cause=error_cause(exc),
              duration_s=took, _t=t1)
            raise
        t1, took = _span(t0)
        self.store.put(path, outs)
        h("ParallelStateExited", path, attempt=attempt, duration_s=took, _t=t1)
        return outs

    def _attempt_map(self, state: Map, path: str, data: Any, scope: _Scope, attempt: int) -> Any:
        h = self.h
        raw = state.items(data) if state.items is not None else data
        if not isinstance(raw, list | tuple):
            exc = StateFailed(RUNTIME, f"Map state {path!r} needs a list of items, got {type(raw).__name__}")
            _tag(exc, path)
            raise exc
        items: list[Any] = _to_json(f"items of Map state {path!r}", list(raw))
        limit = state.max_concurrency or self.r.max_map_threads
        t0 = time.monotonic()
        h("MapStateEntered", path, attempt=attempt, items=len(items), max_concurrency=state.max_concurrency, _t=t0)
        child = _Scope(scope)

        def item_job(i: int, item: Any) -> Callable[[], Any]:
            def job() -> Any:
                ipath = f"{path}/item[{i}]"
                found, out = self.store.get(ipath)
                if found:
                    h("MapIterationSucceeded", ipath, index=i, skipped=True)
                    return out
                ti = time.monotonic()
                h("MapIterationStarted", ipath, index=i, _t=ti)
                try:
                    out = self._run_graph(state.iterator, item, ipath, child)
                except (_Stopped, JobCancelled, StaleLease):
                    raise
                except Exception as exc:
                    t1, took = _span(ti)
                    h("MapIterationFailed", ipath, index=i, error=error_name(exc), cause=error_cause(exc),
                      duration_s=took, _t=t1)
                    raise
                t1, took = _span(ti)
                self.store.put(ipath, out)
                h("MapIterationSucceeded", ipath, index=i, duration_s=took, _t=t1)
                return out
            return job

        jobs = [item_job(i, item) for i, item in enumerate(items)]
        try:
            outs = self._fan_out(jobs, min(limit, len(jobs)), child, path)
        except (_Stopped, JobCancelled, StaleLease):
            raise
        except Exception as exc:
            t1, took = _span(t0)
            h("MapStateFailed", path, attempt=attempt, error=error_name(exc), cause=error_cause(exc),
              duration_s=took, _t=t1)
            raise
        t1, took = _span(t0)
        self.store.put(path, outs)
        h("MapStateExited", path, attempt=attempt, items=len(items), duration_s=took, _t=t1)
        return outs

    def _fan_out(self, jobs: list[Callable[[], Any]], concurrency: int, scope: _Scope, label: str) -> list[Any]:
        """Run jobs in at most ``concurrency`` plain threads; results in job order.

        The first failure stops the scope: queued jobs do not start, running ones stop at their next
        step (or cooperative check). All threads are joined before the error is raised, so a retry of
        the composite never overlaps with leftovers of the failed attempt.
        """
        if not jobs:
            return []
        results: list[Any] = [None] * len(jobs)
        failures: list[BaseException] = []
        lock = threading.Lock()

        def run(i: int) -> None:
            try:
                if scope.stopped():
                    raise _Stopped()
                results[i] = jobs[i]()
            except BaseException as exc:  # collected and re-raised in the orchestrating thread
                if not isinstance(exc, _Stopped):
                    with lock:
                        failures.append(exc)
                    if isinstance(exc, JobCancelled | StaleLease):
                        scope.abort(exc)
                scope.stop()

        with ThreadPoolExecutor(max_workers=max(1, concurrency),
                                thread_name_prefix=f"reelforge-{label[:24]}") as pool:
            # Each thread gets its own copy of the caller's contextvars (tracing, log context).
            for i in range(len(jobs)):
                pool.submit(contextvars.copy_context().run, run, i)
        if failures:
            # Abort errors win (they must stop the whole execution), then crashes, then the first error.
            for exc in failures:
                if isinstance(exc, JobCancelled | StaleLease):
                    raise exc
            for exc in failures:
                if not isinstance(exc, Exception):
                    raise exc
            raise failures[0]
        if scope.stopped():
            raise _Stopped()
        return results
