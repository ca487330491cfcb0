"""The durable step runner: tasks, retry/catch, parallel, map, choice, resume, cancel, fencing."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reelforge.domain.pipeline import (
    Catch,
    Choice,
    ChoiceRule,
    Fail,
    Graph,
    Map,
    Parallel,
    Pass,
    Pipeline,
    Resources,
    Retry,
    Succeed,
    Task,
)
from reelforge.errors import JobCancelled, StaleLease, TransientError
from reelforge.runtime.context import StepContext
from reelforge.runtime.executors import LocalExecutor
from reelforge.runtime.runner import CATCH_SUFFIX, EXECUTION_MARKER, PipelineFailed, StepRunner
from tests.fixtures.checkpoints import InMemoryCheckpointStore

pytestmark = pytest.mark.timeout(30)


class Crash(BaseException):
    """Simulates the worker process dying mid-step: not an Exception, so nothing may handle it."""


class Harness:
    def __init__(self, max_workers: int = 8) -> None:
        self.store = InMemoryCheckpointStore()
        self.executor = LocalExecutor(max_workers)
        self.sleeps: list[float] = []
        self.cancel = threading.Event()
        self.progress: list[tuple[str, float, str]] = []
        self.contexts: list[StepContext] = []

    def make_context(self, path: str) -> StepContext:
        ctx = StepContext(job_id="job-1", owner_id="user-1", kind="demo", attempt=1, path=path,
                          job_input={"in": True}, services="services",
                          on_progress=lambda p, f, m: self.progress.append((p, f, m)),
                          cancelled=self.cancel.is_set, poll_s=0.02)
        self.contexts.append(ctx)
        return ctx

    def runner(self, *, real_sleep: bool = False, executor: Any = None,
               store: Any = None) -> StepRunner:
        return StepRunner(executor or self.executor, store or self.store, self.make_context,
                          self.cancel.is_set, sleep=time.sleep if real_sleep else self.sleeps.append,
                          rng=random.Random(0))

    def run(self, pipeline: Pipeline, data: Any, **kw: Any) -> Any:
        return self.runner(**kw).run(pipeline, data)

    def fresh(self) -> Harness:
        """Forget all checkpoints: the next run is a new job, not a resume."""
        self.store = InMemoryCheckpointStore()
        return self


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.executor.shutdown()


def pipe(*states: Any, start: str | None = None) -> Pipeline:
    return Pipeline("demo", 1, "test pipeline", Graph(start or states[0].name, tuple(states)))


def flaky(failures: list[BaseException], result: Any = "ok") -> tuple[Callable[[Any, Any], Any], list[int]]:
    """A step that raises the given exceptions in order, then returns ``result``; records attempts."""
    attempts: list[int] = []
    pending = list(failures)

    def fn(ctx: StepContext, data: Any) -> Any:
        attempts.append(ctx.step_attempt)
        if pending:
            raise pending.pop(0)
        return result
    return fn, attempts


def add(n: int) -> Callable[[Any, Any], Any]:
    def fn(ctx: StepContext, data: Any) -> Any:
        return data + n
    return fn


# -- basic execution and history -------------------------------------------------------------------


def test_task_success_path_and_history(h: Harness) -> None:
    def first(ctx: StepContext, data: Any) -> Any:
        assert (ctx.job_id, ctx.owner_id, ctx.kind, ctx.attempt, ctx.path) == ("job-1", "user-1", "demo", 1, "a")
        assert ctx.job_input == {"in": True} and ctx.services == "services" and ctx.step_attempt == 1
        ctx.progress(0.5, "half")
        ctx.progress(7, "clamped")
        ctx.check_cancelled()
        ctx.log.info("hello")
        return {"n": data["n"] + 1}

    def second(ctx: StepContext, data: Any) -> Any:
        return {"n": data["n"] * 10}

    p = pipe(Task("a", first, next="b"), Task("b", second, end=True))
    assert h.run(p, {"n": 1}) == {"n": 20}
    assert h.store.event_names() == [
        "ExecutionStarted",
        "TaskStateEntered", "TaskSucceeded",
        "TaskStateEntered", "TaskSucceeded",
        "ExecutionSucceeded",
    ]
    assert [e.path for e in h.store.events] == [None, "a", "a", "b", "b", None]
    assert "duration_s" in h.store.events[2].details and "duration_s" in h.store.events[-1].details
    assert h.store.paths() == [EXECUTION_MARKER, "a", "b"]
    assert h.store.get("a") == (True, {"n": 2})
    assert h.progress == [("a", 0.5, "half"), ("a", 1.0, "clamped")]


def test_outputs_are_normalised_to_json(h: Harness) -> None:
    seen: list[Any] = []

    def make_tuple(ctx: StepContext, data: Any) -> Any:
        return {"t": (1, 2), 3: "int key"}

    def look(ctx: StepContext, data: Any) -> Any:
        seen.append(data)
        return data

    # The first run must see what a resumed run would read back from the store.
    assert h.run(pipe(Task("a", make_tuple, next="b"), Task("b", look, end=True)), None) == {
        "t": [1, 2], "3": "int key"}
    assert seen == [{"t": [1, 2], "3": "int key"}]


def test_non_json_output_fails_with_runtime_error_and_is_not_retried(h: Harness) -> None:
    calls = Counter[str]()

    def bad(ctx: StepContext, data: Any) -> Any:
        calls["bad"] += 1
        return {"obj": object()}

    p = pipe(Task("make", bad, retry=(Retry(interval_s=0),), end=True))
    with pytest.raises(PipelineFailed) as info:
        h.run(p, {})
    assert info.value.code == "States.Runtime" and info.value.path == "make"
    assert isinstance(info.value.__cause__, TypeError)
    assert "'make'" in str(info.value.__cause__)
    assert calls["bad"] == 1
    with pytest.raises(TypeError, match="input of pipeline"):
        h.run(pipe(Pass("p", end=True)), {1, 2})


def test_pass_succeed_and_fail(h: Harness) -> None:
    p = pipe(Pass("keep", next="set"), Pass("set", result={"fixed": 1}, next="ok"), Succeed("ok"))
    assert h.run(p, {"x": 1}) == {"fixed": 1}
    failing = pipe(Pass("a", next="boom"), Fail("boom", error="demo.Bad", cause="it broke"))
    with pytest.raises(PipelineFailed) as info:
        h.run(failing, {})
    assert (info.value.code, info.value.message, info.value.path) == ("demo.Bad", "it broke", "boom")
    assert info.value.retryable is False


# -- retry -------------------------------------------------------------------------------------------


def test_retry_delays_interval_and_backoff(h: Harness) -> None:
    fn, attempts = flaky([TransientError("x")] * 3)
    p = pipe(Task("a", fn, retry=(Retry(("transient_error",), interval_s=2, backoff_rate=3, max_attempts=3),),
                  end=True))
    assert h.run(p, {}) == "ok"
    assert h.sleeps == [2, 6, 18]
    assert attempts == [1, 2, 3, 4]
    retries = [e.details for e in h.store.events if e.event == "TaskRetryScheduled"]
    assert [(d["error"], d["attempt"], d["delay_s"]) for d in retries] == [
        ("transient_error", 1, 2), ("transient_error", 2, 6), ("transient_error", 3, 18)]


def test_retry_delay_capped_by_max_delay(h: Harness) -> None:
    fn, _ = flaky([ValueError("x")] * 4)
    p = pipe(Task("a", fn, retry=(Retry(interval_s=2, backoff_rate=3, max_attempts=4, max_delay_s=5),),
                  end=True))
    assert h.run(p, {}) == "ok"
    assert h.sleeps == [2, 5, 5, 5]


def test_retry_full_jitter_stays_within_delay(h: Harness) -> None:
    fn, _ = flaky([ValueError("x")] * 3)
    p = pipe(Task("a", fn, retry=(Retry(interval_s=4, backoff_rate=2, jitter="FULL"),), end=True))
    h.run(p, {})
    assert len(h.sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(h.sleeps, [4, 8, 16], strict=True))


def test_first_matching_retrier_wins_and_counts_separately(h: Harness) -> None:
    fn, attempts = flaky([ValueError("v"), KeyError("k"), KeyError("k"), ValueError("v")])
    retry = (Retry(("ValueError",), interval_s=1, max_attempts=2),
             Retry(("States.ALL",), interval_s=10, backoff_rate=1, max_attempts=2))
    assert h.run(pipe(Task("a", fn, retry=retry, end=True)), {}) == "ok"
    # ValueError -> retrier 0 (1st use: 1s); KeyError x2 -> retrier 1 (10s each); ValueError -> retrier 0
    # again (2nd use: 1 * 2 = 2s): each retrier keeps its own count and backoff.
    assert h.sleeps == [1, 10, 10, 2]
    assert attempts == [1, 2, 3, 4, 5]


def test_exhausted_first_match_does_not_fall_through(h: Harness) -> None:
    fn, attempts = flaky([ValueError("v"), ValueError("v"), ValueError("v")])
    retry = (Retry(("ValueError",), interval_s=1, max_attempts=1), Retry(("States.ALL",), max_attempts=5))
    with pytest.raises(PipelineFailed) as info:
        h.run(pipe(Task("a", fn, retry=retry, end=True)), {})
    assert info.value.code == "ValueError"
    assert attempts == [1, 2] and h.sleeps == [1]


def test_max_attempts_zero_never_retries(h: Harness) -> None:
    fn, attempts = flaky([ValueError("v")])
    with pytest.raises(PipelineFailed):
        h.run(pipe(Task("a", fn, retry=(Retry(max_attempts=0),), end=True)), {})
    assert attempts == [1] and h.sleeps == []


def test_failure_raises_pipeline_failed_with_code_and_retryable(h: Harness) -> None:
    fn, _ = flaky([TransientError("backend down")])
    with pytest.raises(PipelineFailed) as info:
        h.run(pipe(Task("a", fn, end=True)), {})
    exc = info.value
    assert (exc.code, exc.message, exc.retryable, exc.path) == ("transient_error", "backend down", True, "a")
    assert isinstance(exc.__cause__, TransientError)
    assert h.store.events[-1].event == "ExecutionFailed"
    assert h.store.events[-1].details["error"] == "transient_error"

    fn2, _ = flaky([ValueError("bad value")])
    with pytest.raises(PipelineFailed) as info2:
        h.run(pipe(Task("b", fn2, end=True)), {})
    assert (info2.value.code, info2.value.message, info2.value.retryable) == ("ValueError", "bad value", True)


# -- catch ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result_path", "expected"),
    [
        ("$.error", {"x": 1, "error": {"error": "ValueError", "cause": "boom"}}),
        ("$", {"error": "ValueError", "cause": "boom"}),
        (None, {"x": 1}),
        ("$.a.b", {"x": 1, "a": {"b": {"error": "ValueError", "cause": "boom"}}}),
    ],
)
def test_catch_after_retries_exhausted(h: Harness, result_path: str | None, expected: Any) -> None:
    fn, attempts = flaky([ValueError("boom")] * 5)
    seen: list[Any] = []

    def handler(ctx: StepContext, data: Any) -> Any:
        seen.append(data)
        return {"handled": data}

    p = pipe(
        Task("a", fn, retry=(Retry(interval_s=1, max_attempts=2),),
             catch=(Catch(("KeyError",), "never"), Catch(("States.ALL",), "handle", result_path=result_path)),
             next="never"),
        Task("never", add(0), end=True),
        Task("handle", handler, end=True),
    )
    assert h.run(p, {"x": 1}) == {"handled": expected}
    assert attempts == [1, 2, 3] and h.sleeps == [1, 2]
    assert seen == [expected]
    assert h.store.get("a" + CATCH_SUFFIX)[1]["next"] == "handle"
    caught = [e for e in h.store.events if e.event == "TaskCaught"]
    assert {k: v for k, v in caught[0].details.items() if k != "at"} == {"error": "ValueError", "cause": "boom",
                                                                       "next": "handle"}


def test_result_path_on_non_object_input_fails(h: Harness) -> None:
    fn, _ = flaky([ValueError("boom")])
    p = pipe(Task("a", fn, catch=(Catch(("States.ALL",), "b"),), next="b"), Succeed("b"))
    with pytest.raises(PipelineFailed) as info:
        h.run(p, [1, 2])
    assert info.value.code == "States.ResultPathMatchFailure"


def test_caught_state_resumes_into_the_catcher(h: Harness) -> None:
    fn, attempts = flaky([ValueError("boom")] * 3)
    crash_once = [True]

    def handler(ctx: StepContext, data: Any) -> Any:
        if crash_once.pop() if crash_once else False:
            raise Crash()
        return data

    p = pipe(Task("a", fn, catch=(Catch(("States.ALL",), "handle"),), next="normal"),
             Task("normal", add(0), end=True), Task("handle", handler, end=True))
    with pytest.raises(Crash):
        h.run(p, {"x": 1})
    assert h.run(p, {"x": 1}) == {"x": 1, "error": {"error": "ValueError", "cause": "boom"}}
    assert attempts == [1]  # the failed step was not run again: its catch was durable


# -- timeout -------------------------------------------------------------------------------------------


def test_timeout_is_states_timeout_and_retried(h: Harness) -> None:
    calls: list[int] = []
    stopped = threading.Event()

    def slow_then_fast(ctx: StepContext, data: Any) -> Any:
        calls.append(ctx.step_attempt)
        if ctx.step_attempt == 1:
            try:
                ctx.sleep(5)  # woken by the runner once the timeout passes
            except JobCancelled:
                stopped.set()
                raise
        return "fast"

    p = pipe(Task("a", slow_then_fast, timeout_s=0.2,
                  retry=(Retry(("States.TaskFailed",), max_attempts=3), Retry(("States.Timeout",), interval_s=0.5)),
                  end=True))
    t0 = time.monotonic()
    assert h.run(p, {}) == "fast"
    assert time.monotonic() - t0 < 2
    assert calls == [1, 2] and h.sleeps == [0.5]
    assert stopped.wait(2), "the timed-out step was not told to stop"
    failed = [e.details for e in h.store.events if e.event == "TaskFailed"]
    assert failed[0]["error"] == "States.Timeout"


def test_timeout_without_retry_fails_retryable(h: Harness) -> None:
    def sleepy(ctx: StepContext, data: Any) -> Any:
        ctx.sleep(5)
        return None

    with pytest.raises(PipelineFailed) as info:
        h.run(pipe(Task("a", sleepy, timeout_s=0.1, retry=(Retry(("States.TaskFailed",)),), end=True)), {})
    assert info.value.code == "States.Timeout" and info.value.retryable is True
    assert h.sleeps == []  # States.TaskFailed does not match States.Timeout


def test_timeout_counts_from_start_not_from_queueing() -> None:
    h = Harness(max_workers=1)
    try:
        def work(ctx: StepContext, data: Any) -> Any:
            time.sleep(0.25)
            return ctx.path

        branch = Graph("w", (Task("w", work, timeout_s=0.4, end=True),))
        p = pipe(Parallel("p", (branch, branch), end=True))
        # Each step takes 0.25s, but the second one waits 0.25s for the only executor slot first.
        assert h.run(p, {}) == ["p/branch[0]/w", "p/branch[1]/w"]
    finally:
        h.executor.shutdown()


# -- parallel ------------------------------------------------------------------------------------------


def test_parallel_runs_branches_concurrently_in_order(h: Harness) -> None:
    barrier = threading.Barrier(2, timeout=5)

    def meet(tag: str) -> Callable[[Any, Any], Any]:
        def fn(ctx: StepContext, data: Any) -> Any:
            barrier.wait()  # both branches must be running at the same time to pass this
            if tag == "first":
                time.sleep(0.05)  # finish last, still be first in the output
            return {"tag": tag, "in": data}
        return fn

    b0 = Graph("x", (Task("x", meet("first"), end=True),))
    b1 = Graph("y", (Task("y", meet("second"), next="z"), Pass("z", end=True)))
    p = pipe(Parallel("p", (b0, b1), next="after"), Task("after", lambda c, d: d, end=True))
    assert h.run(p, 7) == [{"tag": "first", "in": 7}, {"tag": "second", "in": 7}]
    assert {"p", "p/branch[0]", "p/branch[1]", "p/branch[0]/x", "p/branch[1]/y"} <= set(h.store.paths())
    names = h.store.event_names()
    assert names.index("ParallelStateEntered") < names.index("ParallelStateExited")


def test_parallel_branches_get_independent_inputs(h: Harness) -> None:
    def mutate(ctx: StepContext, data: Any) -> Any:
        data["touched"] = ctx.path
        return data

    b = Graph("m", (Task("m", mutate, end=True),))
    out = h.run(pipe(Parallel("p", (b, b), end=True)), {"v": 1})
    assert out == [{"v": 1, "touched": "p/branch[0]/m"}, {"v": 1, "touched": "p/branch[1]/m"}]


def test_parallel_retry_does_not_recompute_finished_branches(h: Harness) -> None:
    calls = Counter[str]()
    fail_once = [TransientError("flaky")]

    def good(ctx: StepContext, data: Any) -> Any:
        calls["good"] += 1
        return "good"

    def bad(ctx: StepContext, data: Any) -> Any:
        calls["bad"] += 1
        if fail_once:
            raise fail_once.pop()
        return "bad-ok"

    p = pipe(Parallel("p", (Graph("g", (Task("g", good, end=True),)), Graph("b", (Task("b", bad, end=True),))),
                      retry=(Retry(interval_s=3),), end=True))
    assert h.run(p, {}) == ["good", "bad-ok"]
    assert calls == {"good": 1, "bad": 2} and h.sleeps == [3]
    assert "ParallelStateFailed" in h.store.event_names()


def test_sibling_failure_stops_a_cooperative_branch(h: Harness) -> None:
    def fail_fast(ctx: StepContext, data: Any) -> Any:
        time.sleep(0.05)
        raise ValueError("first branch broke")

    def long_sleeper(ctx: StepContext, data: Any) -> Any:
        ctx.sleep(10)
        return "never"

    p = pipe(Parallel("p", (Graph("f", (Task("f", fail_fast, end=True),)),
                            Graph("s", (Task("s", long_sleeper, end=True),))), end=True))
    t0 = time.monotonic()
    with pytest.raises(PipelineFailed) as info:
        h.run(p, {})
    assert time.monotonic() - t0 < 3
    assert info.value.code == "ValueError" and info.value.path == "p/branch[0]/f"
    assert "TaskAborted" in h.store.events_for("p/branch[1]/s")


def test_fail_state_in_branch_is_caught_by_parallel(h: Harness) -> None:
    branch = Graph("f", (Fail("f", error="demo.Nope", cause="no"),))
    p = pipe(Parallel("p", (branch,), catch=(Catch(("demo.Nope",), "done", result_path="$.why"),), next="x"),
             Succeed("x"), Succeed("done"))
    assert h.run(p, {"a": 1}) == {"a": 1, "why": {"error": "demo.Nope", "cause": "no"}}


# -- map -----------------------------------------------------------------------------------------------


def test_map_respects_max_concurrency_and_keeps_order(h: Harness) -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def work(ctx: StepContext, item: Any) -> Any:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01 * (10 - item))  # later items finish sooner
        with lock:
            running[0] -= 1
        return item * 2

    p = pipe(Map("m", Graph("w", (Task("w", work, end=True),)), items=lambda d: d["items"],
                 max_concurrency=3, end=True))
    assert h.run(p, {"items": list(range(10))}) == [i * 2 for i in range(10)]
    assert 2 <= peak[0] <= 3
    started = [e.details["index"] for e in h.store.events if e.event == "MapIterationStarted"]
    assert sorted(started) == list(range(10))


def test_map_default_items_and_empty_list(h: Harness) -> None:
    it = Graph("w", (Task("w", add(1), end=True),))
    assert h.run(pipe(Map("m", it, end=True)), [1, 2, 3]) == [2, 3, 4]
    assert h.fresh().run(pipe(Map("m", it, end=True)), []) == []
    with pytest.raises(PipelineFailed) as info:
        h.fresh().run(pipe(Map("m", it, end=True)), {"not": "a list"})
    assert info.value.code == "States.Runtime"


def test_nested_composites_do_not_deadlock_a_bounded_executor() -> None:
    h = Harness(max_workers=1)
    try:
        inner = Graph("w", (Task("w", add(1), end=True),))
        branch = Graph("m", (Map("m", inner, end=True),))
        p = pipe(Parallel("p", (branch, branch, branch), end=True))
        assert h.run(p, [1, 2, 3, 4]) == [[2, 3, 4, 5]] * 3
    finally:
        h.executor.shutdown()


def test_map_retry_does_not_recompute_finished_items(h: Harness) -> None:
    calls = Counter[int]()
    fail_once = [TransientError("flaky")]

    def work(ctx: StepContext, item: Any) -> Any:
        calls[item] += 1
        if item == 3 and fail_once:
            raise fail_once.pop()
        return item

    p = pipe(Map("m", Graph("w", (Task("w", work, end=True),)), max_concurrency=1,
                 retry=(Retry(interval_s=0.5),), end=True))
    assert h.run(p, list(range(6))) == list(range(6))
    assert calls == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1}
    assert [e.details.get("skipped") for e in h.store.events
            if e.event == "MapIterationSucceeded" and e.details["index"] < 3][-3:] == [True] * 3


# -- resume --------------------------------------------------------------------------------------------


def test_resume_after_crash_skips_finished_steps_and_items(h: Harness) -> None:
    calls = Counter[str]()
    crash = [True]

    def prepare(ctx: StepContext, data: Any) -> Any:
        calls["prepare"] += 1
        return {"items": list(range(data["n"]))}

    def decode(ctx: StepContext, item: Any) -> Any:
        calls[f"decode{item}"] += 1
        return item * 10

    def encode(ctx: StepContext, value: Any) -> Any:
        calls[f"encode{value // 10}"] += 1
        if value == 20 and crash and crash.pop():
            raise Crash()  # the worker dies in item 2, after items 0 and 1 finished
        return value + 1

    def total(ctx: StepContext, data: Any) -> Any:
        calls["total"] += 1
        return sum(data)

    iterator = Graph("decode", (Task("decode", decode, next="encode"), Task("encode", encode, end=True)))
    p = pipe(Task("prepare", prepare, next="chunks"),
             Map("chunks", iterator, items=lambda d: d["items"], max_concurrency=1, next="total"),
             Task("total", total, end=True))

    with pytest.raises(Crash):
        h.run(p, {"n": 5})
    assert calls == {"prepare": 1, "decode0": 1, "encode0": 1, "decode1": 1, "encode1": 1,
                     "decode2": 1, "encode2": 1}
    h.store.clear_history()

    assert h.run(p, {"n": 5}) == sum(i * 10 + 1 for i in range(5))
    assert calls == {"prepare": 1, "total": 1, **{f"decode{i}": 1 for i in range(5)},
                     **{f"encode{i}": 1 for i in range(5)}, "encode2": 2}
    events = h.store.events
    assert events[0].event == "ExecutionResumed"
    assert ("TaskSkipped", "prepare") in [(e.event, e.path) for e in events]
    assert ("TaskSkipped", "chunks/item[2]/decode") in [(e.event, e.path) for e in events]
    skipped = [e.details["index"] for e in events if e.event == "MapIterationSucceeded" and e.details.get("skipped")]
    assert skipped == [0, 1]

    # A third run replays everything from checkpoints and runs nothing.
    before = calls.copy()
    assert h.run(p, {"n": 5}) == 105
    assert calls == before


def test_loops_get_distinct_paths_and_resume(h: Harness) -> None:
    calls = Counter[str]()

    def poll(ctx: StepContext, data: Any) -> Any:
        calls[ctx.path] += 1
        return {"n": data["n"] + 1}

    p = pipe(Task("poll", poll, next="done?"),
             Choice("done?", (ChoiceRule(lambda d: d["n"] >= 3, "ok"),), default="poll"),
             Succeed("ok"))
    assert h.run(p, {"n": 0}) == {"n": 3}
    assert set(calls) == {"poll", "poll#2", "poll#3"}
    assert h.run(p, {"n": 0}) == {"n": 3}
    assert sum(calls.values()) == 3


# -- choice ---------------------------------------------------------------------------------------------


def test_choice_routing_and_no_match(h: Harness) -> None:
    def route(default: str | None) -> Pipeline:
        return pipe(
            Choice("size", (ChoiceRule(lambda d: d["n"] > 10, "big", "large input"),
                            ChoiceRule(lambda d: d["n"] > 3, "medium", "medium input")), default=default),
            Pass("big", result="big", end=True), Pass("medium", result="medium", end=True),
            Pass("small", result="small", end=True),
        ) if default else pipe(
            Choice("size", (ChoiceRule(lambda d: d["n"] > 10, "big"),)), Pass("big", result="big", end=True))

    assert h.run(route("small"), {"n": 50}) == "big"
    assert h.run(route("small"), {"n": 5}) == "medium"
    assert h.run(route("small"), {"n": 1}) == "small"
    entered = [e.details["next"] for e in h.store.events if e.event == "ChoiceStateEntered"]
    assert entered == ["big", "medium", "small"]
    with pytest.raises(PipelineFailed) as info:
        h.run(route(None), {"n": 1})
    assert info.value.code == "States.NoChoiceMatched" and info.value.path == "size"


# -- cancellation and fencing -------------------------------------------------------------------------


def test_cancel_mid_map_stops_queued_items(h: Harness) -> None:
    ran: list[int] = []

    def work(ctx: StepContext, item: Any) -> Any:
        ran.append(item)
        if item == 2:
            h.cancel.set()  # the user cancels while item 2 runs
        return item

    p = pipe(Map("m", Graph("w", (Task("w", work, next="x"), Task("x", add(0), end=True))),
                 max_concurrency=1, retry=(Retry(),), catch=(Catch(("States.ALL",), "c"),), next="c"),
             Succeed("c"))
    with pytest.raises(JobCancelled):
        h.run(p, list(range(8)))
    assert ran == [0, 1, 2]
    assert h.sleeps == []  # never retried, never caught
    assert h.store.event_names()[-1] == "ExecutionAborted"
    assert not h.store.get("m")[0]


def test_cancel_interrupts_a_retry_backoff(h: Harness) -> None:
    fn, _ = flaky([ValueError("x")] * 3)
    p = pipe(Task("a", fn, retry=(Retry(interval_s=30),), end=True))
    threading.Timer(0.1, h.cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(JobCancelled):
        h.run(p, {}, real_sleep=True)
    assert time.monotonic() - t0 < 3


def test_step_raising_job_cancelled_is_not_retried(h: Harness) -> None:
    def cooperative(ctx: StepContext, data: Any) -> Any:
        h.cancel.set()
        ctx.check_cancelled()
        return "unreachable"

    p = pipe(Task("a", cooperative, retry=(Retry(),), catch=(Catch(("States.ALL",), "b"),), next="b"),
             Succeed("b"))
    with pytest.raises(JobCancelled):
        h.run(p, {})
    assert h.sleeps == []


class FencedStore(InMemoryCheckpointStore):
    """Refuses the write for one path, as the DB does once another worker took the lease."""

    def __init__(self, refuse: str) -> None:
        super().__init__()
        self.refuse = refuse

    def put(self, path: str, output: Any) -> None:
        if path == self.refuse:
            raise StaleLease(f"lease lost at {path}")
        super().put(path, output)


def test_stale_lease_from_put_propagates_at_once(h: Harness) -> None:
    store = FencedStore("b")
    calls = Counter[str]()

    def count(ctx: StepContext, data: Any) -> Any:
        calls[ctx.path] += 1
        return data

    p = pipe(Task("a", count, next="b"),
             Task("b", count, retry=(Retry(),), catch=(Catch(("States.ALL",), "c"),), next="c"),
             Task("c", count, end=True))
    with pytest.raises(StaleLease):
        h.run(p, {}, store=store)
    assert calls == {"a": 1, "b": 1}
    assert h.sleeps == []
    assert "ExecutionFailed" not in store.event_names()


def test_stale_lease_in_map_stops_other_items(h: Harness) -> None:
    store = FencedStore("m/item[1]/w")
    ran: list[int] = []

    def work(ctx: StepContext, item: Any) -> Any:
        ran.append(item)
        return item

    p = pipe(Map("m", Graph("w", (Task("w", work, end=True),)), max_concurrency=1, retry=(Retry(),), end=True))
    with pytest.raises(StaleLease):
        h.run(p, list(range(5)), store=store)
    assert ran == [0, 1]


def test_resources_checked_by_executor(h: Harness) -> None:
    small = LocalExecutor(2, capacity=Resources(cpu=4, gpu=0, memory_mb=8192))
    try:
        assert small.resources_ok(Resources(cpu=2))
        p = pipe(Task("gpu", add(0), resources=Resources(gpu=1), end=True))
        with pytest.raises(PipelineFailed) as info:
            h.run(p, 1, executor=small)
        assert info.value.code == "resources_unavailable"
        assert LocalExecutor(1).resources_ok(Resources(gpu=8))  # no capacity declared: anything goes
    finally:
        small.shutdown()


def test_one_runner_runs_two_executions_at_once(h: Harness) -> None:
    barrier = threading.Barrier(2, timeout=5)

    def meet(ctx: StepContext, data: Any) -> Any:
        barrier.wait()
        return data

    p = pipe(Task("a", meet, end=True))
    stores = [InMemoryCheckpointStore(), InMemoryCheckpointStore()]
    runners = [h.runner(store=s) for s in stores]
    results: list[Any] = [None, None]
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, runners[i].run(p, i))) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [0, 1]


def test_steps_see_their_declared_resources(h: Harness) -> None:
    """A step knows the memory it declares, so media steps can refuse a decode that would not fit in it."""
    from reelforge import errors
    from reelforge.domain.media import check_decode_memory, decode_memory

    def measure(ctx: StepContext, data: Any) -> Any:
        return {"memory_mb": ctx.memory_mb, "cpu": ctx.resources.cpu if ctx.resources else None}

    def decode_huge(ctx: StepContext, data: Any) -> Any:
        check_decode_memory(decode_memory(16384, 16128, threads=2, held_rgb=2), ctx.memory_mb)
        return "decoded"

    out = h.run(pipe(Task("m", measure, resources=Resources(cpu=2, memory_mb=1536), end=True)), {})
    assert out == {"memory_mb": 1536, "cpu": 2}
    with pytest.raises(PipelineFailed) as exc:
        h.fresh().run(pipe(Task("d", decode_huge, resources=Resources(memory_mb=2048), end=True)), {})
    assert exc.value.code == "memory_limit_exceeded" and not exc.value.retryable
    assert isinstance(exc.value.__cause__, errors.MemoryLimitExceeded)
