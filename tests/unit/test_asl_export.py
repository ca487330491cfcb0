"""Amazon States Language export: shape of every state type, nesting, JSON validity."""

from __future__ import annotations

import json
from typing import Any

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


def probe(ctx: Any, data: Any) -> Any:
    return data


def encode(ctx: Any, data: Any) -> Any:
    return data


def chunk_list(data: Any) -> list[Any]:
    return list(data["chunks"])


def big_pipeline() -> Pipeline:
    branch_a = Graph("ocr", (Task("ocr", probe, end=True),))
    branch_b = Graph("embed", (Task("embed", probe, next="done"), Succeed("done")))
    iterator = Graph("encode", (Task("encode", encode, resources=Resources(cpu=2, gpu=1, memory_mb=2048),
                                     end=True),))
    return Pipeline("demo", 2, "every state type", Graph("probe", (
        Task("probe", probe, timeout_s=2.5, comment="look at the input",
             retry=(Retry(("transient_error",), interval_s=2, max_attempts=4, backoff_rate=1.5,
                          max_delay_s=30, jitter="FULL"), Retry()),
             catch=(Catch(("States.ALL",), "failed", result_path="$.err"),), next="route"),
        Choice("route", (ChoiceRule(lambda d: bool(d.get("video")), "analyze", "input is a video"),),
               default="chunks"),
        Parallel("analyze", (branch_a, branch_b), retry=(Retry(max_attempts=1),), next="chunks"),
        Map("chunks", iterator, items=chunk_list, max_concurrency=4,
            catch=(Catch(("States.ALL",), "failed", result_path=None),), next="stamp"),
        Pass("stamp", result={"stamped": True}, next="ok"),
        Succeed("ok"),
        Fail("failed", error="demo.failed", cause="something broke"),
    )))


def test_top_level_shape_and_json() -> None:
    asl = big_pipeline().to_asl()
    text = json.dumps(asl)
    back = json.loads(text)
    assert back["StartAt"] == "probe" and back["StartAt"] in back["States"]
    assert back["Comment"] == "demo v2: every state type"
    assert set(back["States"]) == {"probe", "route", "analyze", "chunks", "stamp", "ok", "failed"}


def test_task_export() -> None:
    s = big_pipeline().to_asl()["States"]["probe"]
    assert s["Type"] == "Task"
    assert s["Resource"] == f"arn:reelforge:step:{__name__}:probe"
    assert s["TimeoutSeconds"] == 3  # rounded up to whole seconds
    assert s["Comment"] == "look at the input"
    assert s["Next"] == "route" and "End" not in s
    assert s["Retry"] == [
        {"ErrorEquals": ["transient_error"], "IntervalSeconds": 2, "MaxAttempts": 4, "BackoffRate": 1.5,
         "MaxDelaySeconds": 30, "JitterStrategy": "FULL"},
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2,
         "JitterStrategy": "NONE"},
    ]
    assert s["Catch"] == [{"ErrorEquals": ["States.ALL"], "Next": "failed", "ResultPath": "$.err"}]
    assert s["x-reelforge"] == {"resources": {"cpu": 1, "gpu": 0, "memory_mb": 512},
                                "fn": f"{__name__}:probe", "timeout_s": 2.5}


def test_choice_export() -> None:
    s = big_pipeline().to_asl()["States"]["route"]
    assert s == {
        "Type": "Choice",
        "Choices": [{"Variable": "$", "IsPresent": True, "Next": "analyze", "Comment": "input is a video"}],
        "Default": "chunks",
    }


def test_parallel_export_has_branches() -> None:
    s = big_pipeline().to_asl()["States"]["analyze"]
    assert s["Type"] == "Parallel" and s["Next"] == "chunks"
    assert [b["StartAt"] for b in s["Branches"]] == ["ocr", "embed"]
    for b in s["Branches"]:
        assert b["StartAt"] in b["States"]
    assert s["Branches"][0]["States"]["ocr"]["End"] is True
    assert s["Branches"][1]["States"]["done"] == {"Type": "Succeed"}
    assert s["Retry"][0]["MaxAttempts"] == 1


def test_map_export_has_item_processor() -> None:
    s = big_pipeline().to_asl()["States"]["chunks"]
    assert s["Type"] == "Map" and s["MaxConcurrency"] == 4 and s["Next"] == "stamp"
    proc = s["ItemProcessor"]
    assert proc["ProcessorConfig"] == {"Mode": "INLINE"}
    assert proc["StartAt"] == "encode" and proc["StartAt"] in proc["States"]
    enc = proc["States"]["encode"]
    assert enc["x-reelforge"]["resources"] == {"cpu": 2, "gpu": 1, "memory_mb": 2048}
    assert enc["End"] is True
    assert s["Catch"] == [{"ErrorEquals": ["States.ALL"], "Next": "failed", "ResultPath": None}]
    assert s["x-reelforge"] == {"items": f"{__name__}:chunk_list"}


def test_pass_succeed_fail_export() -> None:
    states = big_pipeline().to_asl()["States"]
    assert states["stamp"] == {"Type": "Pass", "Result": {"stamped": True}, "Next": "ok"}
    assert states["ok"] == {"Type": "Succeed"}
    assert states["failed"] == {"Type": "Fail", "Error": "demo.failed", "Cause": "something broke"}
    plain = Pipeline("p", 1, "p", Graph("a", (Pass("a", end=True),))).to_asl()
    assert plain["States"]["a"] == {"Type": "Pass", "End": True}


def _check_targets(graph: dict[str, Any]) -> None:
    """Every Next/Default/catch target names a state of the same graph; nested graphs recursively."""
    states = graph["States"]
    assert graph["StartAt"] in states
    for s in states.values():
        targets = [s.get("Next"), s.get("Default")]
        targets += [c["Next"] for c in s.get("Choices", [])] + [c["Next"] for c in s.get("Catch", [])]
        for t in targets:
            assert t is None or t in states
        for b in s.get("Branches", []):
            _check_targets(b)
        if "ItemProcessor" in s:
            _check_targets(s["ItemProcessor"])


def test_all_transitions_resolve() -> None:
    _check_targets(big_pipeline().to_asl())


def test_the_upscale_map_exports_the_configured_chunk_concurrency(tmp_path: Any) -> None:
    """The chunk Map of `video.upscale` runs and exports `upscale.max_chunk_concurrency`, not a fixed cap."""
    from reelforge.container import Container
    from tests.conftest import make_settings

    for configured in (2, 3):
        c = Container(make_settings(tmp_path, "sqlite://", upscale={"max_chunk_concurrency": configured}))
        try:
            pipeline = c.pipelines.get("video.upscale")
            chunks = pipeline.to_asl()["States"]["chunks"]
            assert chunks["Type"] == "Map" and chunks["MaxConcurrency"] == configured
            (step,) = [s for s in pipeline.describe()["steps"] if s["path"] == "chunks"]
            assert step["max_concurrency"] == configured
        finally:
            c.close()
