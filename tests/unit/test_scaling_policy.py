"""The scaling policy (domain/scaling.py) that `reelforge autoscale` and the cloud deployment share."""

from __future__ import annotations

import pytest

from reelforge.domain.scaling import ClassPolicy, Load, desired_workers

P = ClassPolicy(min_workers=0, max_workers=4, jobs_per_worker=2, max_age_s=30, idle_s=60)


def test_scale_from_zero_on_the_first_job() -> None:
    d = desired_workers(P, Load(depth=1), current=0, idle_for_s=0)
    assert d.desired == 1 and d.reason.startswith("scale from zero")


def test_depth_and_running_per_worker() -> None:
    assert desired_workers(P, Load(depth=5, running=0), current=1, idle_for_s=0).desired == 3
    assert desired_workers(P, Load(depth=3, running=2), current=1, idle_for_s=0).desired == 3
    assert desired_workers(P, Load(depth=100), current=1, idle_for_s=0).desired == 4  # max_workers


def test_old_queue_adds_a_worker() -> None:
    d = desired_workers(P, Load(depth=1, oldest_age_s=45, running=1), current=1, idle_for_s=0)
    assert d.desired == 2 and "oldest waited" in d.reason
    assert desired_workers(P, Load(depth=1, oldest_age_s=10, running=1), current=1, idle_for_s=0).desired == 1


def test_no_scale_in_while_jobs_wait_but_down_when_only_running() -> None:
    assert desired_workers(P, Load(depth=1, running=0), current=3, idle_for_s=0).desired == 3
    assert desired_workers(P, Load(depth=0, running=1), current=3, idle_for_s=0).desired == 1


def test_scale_to_zero_only_after_the_idle_period() -> None:
    held = desired_workers(P, Load(), current=2, idle_for_s=59)
    assert held.desired == 2 and "holding" in held.reason
    assert desired_workers(P, Load(), current=2, idle_for_s=60).desired == 0
    floor = ClassPolicy(min_workers=1, max_workers=4, idle_s=0)
    assert desired_workers(floor, Load(), current=3, idle_for_s=5).desired == 1
    assert desired_workers(floor, Load(), current=0, idle_for_s=5).desired == 1  # the minimum is kept


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ClassPolicy(min_workers=3, max_workers=2)
    with pytest.raises(ValueError):
        ClassPolicy(jobs_per_worker=0)
