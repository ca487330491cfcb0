"""Graph validation, retry arithmetic, error matching and the pipeline registry."""

from __future__ import annotations

import random
from typing import Any

import pytest

from reelforge import errors
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
    PipelineRegistry,
    Resources,
    Retry,
    Succeed,
    Task,
    error_matches,
)


def step(ctx: Any, data: Any) -> Any:
    return data


def linear(*names: str) -> Graph:
    states = [Task(n, step, next=names[i + 1]) for i, n in enumerate(names[:-1])]
    states.append(Task(names[-1], step, end=True))
    return Graph(names[0], tuple(states))


def test_valid_graph_passes() -> None:
    linear("a", "b", "c").validate()


def test_task_records_fn_ref() -> None:
    t = Task("a", step, end=True)
    assert t.fn_ref == f"{__name__}:step"
    assert Task("a", step, end=True, fn_ref="x:y").fn_ref == "x:y"


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (Graph("a", ()), "no states"),
        (Graph("zz", (Task("a", step, end=True),)), "start_at 'zz'"),
        (Graph("a", (Task("a", step, end=True), Task("a", step, end=True))), "duplicate state name 'a'"),
        (Graph("a", (Task("a", step, next="nope"),)), "goes to 'nope'"),
        (Graph("a", (Task("a", step),)), "exactly one of next/end"),
        (Graph("a", (Task("a", step, next="b", end=True), Succeed("b"))), "exactly one of next/end"),
        (Graph("a", (Pass("a"),)), "exactly one of next/end"),
        (Graph("a", (Task("a", step, end=True), Task("b", step, end=True))), "unreachable states: 'b'"),
        (Graph("a", (Choice("a", ()),)), "at least one rule"),
        (Graph("a", (Choice("a", (ChoiceRule(lambda d: True, "x"),)),)), "goes to 'x'"),
        (Graph("a", (Choice("a", (ChoiceRule(lambda d: True, "b"),), default="c"), Succeed("b"))),
         "goes to 'c'"),
        (Graph("a/b", (Task("a/b", step, end=True),)), "reserved characters"),
        (Graph("$a", (Task("$a", step, end=True),)), "must not start with '$'"),
        (Graph("a", (Task("a", step, next="b"), Task("b", step, next="a"))), "no terminal state"),
        (Graph("s", (Choice("s", (ChoiceRule(lambda d: True, "a"),), default="ok"), Succeed("ok"),
                     Task("a", step, next="b"), Task("b", step, next="a"))),
         "never reach an end .*'a', 'b'"),
        (Graph("a", (Task("a", step, end=True, catch=(Catch(("X",), "zz"),)),)), "goes to 'zz'"),
        (Graph("a", (Task("a", step, end=True, timeout_s=0),)), "timeout_s must be > 0"),
        (Graph("a", (Parallel("a", (), end=True),)), "at least one branch"),
        (Graph("a", (Map("a", linear("x"), max_concurrency=-1, end=True),)), "max_concurrency"),
        (Graph("a", (Fail("a", ""),)), "needs an error name"),
    ],
)
def test_invalid_graphs(graph: Graph, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("$", r"\$")):
        graph.validate()


def test_loop_with_exit_is_valid() -> None:
    g = Graph("poll", (
        Task("poll", step, next="done?"),
        Choice("done?", (ChoiceRule(lambda d: d["done"], "ok"),), default="poll"),
        Succeed("ok"),
    ))
    g.validate()


def test_nested_errors_name_their_location() -> None:
    bad_branch = Graph("x", (Task("x", step, next="missing"),))
    g = Graph("p", (Parallel("p", (linear("a"), bad_branch), end=True),))
    with pytest.raises(ValueError, match=r"p/branch\[1\]: state 'x' goes to 'missing'"):
        g.validate()
    m = Graph("m", (Map("m", Graph("y", (Task("y", step),)), end=True),))
    with pytest.raises(ValueError, match=r"m/item\[\*\]: state 'y' must set exactly one"):
        m.validate()


def test_states_all_must_be_last_and_alone() -> None:
    retry_first = Task("a", step, end=True, retry=(Retry(("States.ALL",)), Retry(("ValueError",))))
    with pytest.raises(ValueError, match=r"States\.ALL entry must be the last"):
        Graph("a", (retry_first,)).validate()
    not_alone = Task("a", step, end=True, retry=(Retry(("States.ALL", "ValueError")),))
    with pytest.raises(ValueError, match="must appear alone"):
        Graph("a", (not_alone,)).validate()
    catch_first = Task("a", step, next="b", catch=(Catch(("States.ALL",), "b"), Catch(("X",), "b")))
    with pytest.raises(ValueError, match=r"Catch: the States.ALL entry must be the last"):
        Graph("a", (catch_first, Succeed("b"))).validate()
    ok = Task("a", step, end=True, retry=(Retry(("ValueError",)), Retry(("States.ALL",))))
    Graph("a", (ok,)).validate()


def test_pipeline_validates_on_construction() -> None:
    with pytest.raises(ValueError, match=r"pipeline 'demo' v1: .*unreachable"):
        Pipeline("demo", 1, "d", Graph("a", (Task("a", step, end=True), Task("b", step, end=True))))


def test_retry_and_catch_argument_checks() -> None:
    with pytest.raises(ValueError):
        Retry(max_attempts=-1)
    with pytest.raises(ValueError):
        Retry(backoff_rate=0.5)
    with pytest.raises(ValueError):
        Retry(errors=())
    with pytest.raises(ValueError):
        Retry(errors="States.ALL")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported ResultPath"):
        Catch(("X",), "b", result_path="error")
    with pytest.raises(ValueError):
        Resources(cpu=-1)


def test_retry_delays() -> None:
    r = Retry(interval_s=2, backoff_rate=3, max_attempts=5)
    assert [r.delay(n) for n in (1, 2, 3)] == [2, 6, 18]
    capped = Retry(interval_s=1, backoff_rate=2, max_delay_s=5)
    assert [capped.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    jittered = Retry(interval_s=10, backoff_rate=1, jitter="FULL")
    rng = random.Random(7)
    values = [jittered.delay(1, rng) for _ in range(50)]
    assert all(0 <= v <= 10 for v in values) and len(set(values)) > 1


def test_error_matching_follows_asl() -> None:
    assert error_matches(("States.ALL",), "ValueError")
    assert error_matches(("States.ALL",), "States.Timeout")
    assert not error_matches(("States.ALL",), "States.Runtime")
    assert error_matches(("States.TaskFailed",), "transient_error")
    assert not error_matches(("States.TaskFailed",), "States.Timeout")
    assert error_matches(("States.Timeout",), "States.Timeout")
    assert error_matches(("A", "B"), "B")
    assert not error_matches(("A",), "B")


def test_registry() -> None:
    p = Pipeline("demo", 1, "demo", linear("a"))
    reg = PipelineRegistry()
    reg.register(p)
    reg.register(p)  # same object again is harmless
    assert reg.get("demo") is p and "demo" in reg and len(reg) == 1
    assert reg.all() == [p]
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Pipeline("demo", 2, "demo", linear("a")))
    with pytest.raises(errors.NotFound) as info:
        reg.get("nope")
    assert info.value.code == "unknown_kind"


def test_describe_flattens_paths() -> None:
    g = Graph("p", (
        Parallel("p", (linear("a"), Graph("m", (Map("m", linear("enc"), end=True),))), next="t"),
        Task("t", step, resources=Resources(cpu=2, gpu=1, memory_mb=4096), timeout_s=30, end=True),
    ))
    d = Pipeline("demo", 3, "described", g).describe()
    assert d["kind"] == "demo" and d["version"] == 3 and d["description"] == "described"
    paths = [s["path"] for s in d["steps"]]
    assert paths == ["p", "p/branch[0]/a", "p/branch[1]/m", "p/branch[1]/m/item[*]/enc", "t"]
    t = d["steps"][-1]
    assert t["resources"] == {"cpu": 2, "gpu": 1, "memory_mb": 4096} and t["timeout_s"] == 30
    assert t["fn"] == f"{__name__}:step"


def test_pipeline_defaults_and_input_schema() -> None:
    from pydantic import BaseModel

    class ImageIn(BaseModel):
        prompt: str

    p = Pipeline("img", 1, "d", linear("a"), input_model=ImageIn)
    assert p.price({"prompt": "x"}) == 1 and p.max_attempts is None
    assert p.describe()["input_schema"]["required"] == ["prompt"]
    priced = Pipeline("img", 1, "d", linear("a"), price=lambda inp: 2 * len(inp["prompt"]), max_attempts=5)
    assert priced.price({"prompt": "abc"}) == 6
    with pytest.raises(ValueError):
        Pipeline("img", 0, "d", linear("a"))
