"""A `film.render` job survives SIGKILL of its worker: the next worker resumes at the first scene step without a
checkpoint, finished scenes are not spoken, pictured or scored again, and the film is made once, charged once.

Real `reelforge worker` processes on the test's database and local store. Scenes run one at a time, so the kill
lands after the first scenes are checkpointed and before the film is composed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import WorkerProcs, balance, job_record, wait_until

SCENES = 6
SCRIPT = "\n".join(f"""INT. ROOM {n} - NIGHT

The clock ticks. Rain taps the glass.

ANNA
This is scene {n}, and the storm is not over yet.
""" for n in range(1, SCENES + 1))


@pytest.mark.reliability
def test_sigkill_between_scenes_resumes_without_redoing_them(container: Any, user: Any, procs: WorkerProcs,
                                                             tmp_path: Path) -> None:
    project = container.app("film").create(user, {"title": "Storm", "script": SCRIPT})
    grant = balance(container, user.user_id)
    job, _ = container.jobs.submit(user, "film.render", {"project_id": project.id, "height": 360, "fps": 24})
    assert job.credits >= 1  # reserved

    base_env = procs.env

    def env(n: int, **overrides: Any) -> dict[str, str]:
        return {**base_env(n, **overrides), "REELFORGE_FILM__RENDER__SCENE_CONCURRENCY": "1"}

    procs.env = env  # type: ignore[method-assign]
    first = procs.start(concurrency=1)

    def some_scenes_done() -> list[int] | None:
        rec = job_record(container, job.id)
        assert rec.job.status in ("queued", "running"), (rec.job.status, rec.job.error_code, rec.job.error_message)
        done = [i for i in range(SCENES) if f"scenes/item[{i}]" in rec.checkpoints]
        return done if len(done) >= 2 else None

    wait_until(some_scenes_done, 240, "two scenes checkpointed by the first worker")
    procs.kill(first)
    rec = job_record(container, job.id)
    before = [i for i in range(SCENES) if f"scenes/item[{i}]" in rec.checkpoints]
    assert 2 <= len(before) < SCENES and "compose" not in rec.checkpoints, "the kill must land between scenes"

    procs.start(concurrency=1)
    wait_until(lambda: job_record(container, job.id).job.status in ("succeeded", "failed", "dead") or None, 240,
               "the render to end on the second worker")
    rec = job_record(container, job.id)
    assert rec.job.status == "succeeded", (rec.job.error_code, rec.job.error_message, procs.report())
    assert rec.job.attempt >= 2 and rec.count("JobSucceeded") == 1
    # charged once: the rendered seconds' price, at most the reservation
    assert 1 <= rec.job.credits <= job.credits and balance(container, user.user_id) == grant - rec.job.credits
    out = rec.job.outputs
    assert len(out["scenes"]) == SCENES and out["duration_s"] == pytest.approx(out["planned_duration_s"], abs=0.5)
    resumed = [e for e in rec.events if e.attempt == rec.job.attempt]
    assert any(e.type == "ExecutionResumed" for e in resumed)
    for i in range(SCENES):
        entered = {e.path for e in resumed if e.type == "TaskStateEntered"}
        for step in ("voices", "visuals", "sound"):
            path = f"scenes/item[{i}]/{step}"
            # finished scenes are not made again; the others are made by the second worker
            assert (path in entered) == (i not in before), (path, before)
    # the scenes' temporary tracks went with the job; the film, thumbnail, posters and subtitles stay, once each
    with container.store.tx(write=False) as tx:
        assets = list(tx.assets.assets(owner_id=user.user_id, job_id=job.id, limit=1000))
    kinds = sorted((a.meta or {}).get("kind", "") for a in assets)
    assert kinds == sorted(["film.render", "film.thumbnail", *["film.scene.poster"] * SCENES,
                            "film.subtitles", "film.subtitles"]), kinds
