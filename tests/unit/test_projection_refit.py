"""Projection refits across processes: when a refit is due, the shared projection file that every worker's
local embedding adapter re-reads when it changes, and the units the video tasks are metered in."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from reelforge.apps.mobs.clustering import refit_due
from reelforge.apps.mobs.models import (
    RAW_DIM,
    ProjectionFile,
    explained_variance,
    fit_projection,
    random_projection,
)
from reelforge.apps.mobs.models.local import AnalysisCache, LocalEmbedAdapter, LocalEmbedResult
from reelforge.apps.mobs.ports import EmbedResult, ParticipationResult, VideoAnalysisRequest
from reelforge.errors import ValidationFailed
from reelforge.services.metering import units_of

DIM = 32


def _raw(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, RAW_DIM))
    return (centres[np.arange(n) % 3] + 0.2 * rng.standard_normal((n, RAW_DIM))).astype(np.float32)


def test_refit_is_due_at_the_minimum_and_when_the_videos_doubled() -> None:
    assert refit_due(19, min_videos=20, kind="rp", n_fit=0)[0] is False
    assert refit_due(20, min_videos=20, kind="rp", n_fit=0)[0] is True
    assert refit_due(40, min_videos=20, kind="pca", n_fit=20)[0] is False  # exactly twice: not yet
    assert refit_due(41, min_videos=20, kind="pca", n_fit=20)[0] is True
    assert refit_due(30, min_videos=20, kind="pca", n_fit=20)[0] is False
    due, why = refit_due(5, min_videos=20, kind="pca", n_fit=2)
    assert due is False and "fewer than 20" in why


def test_explained_variance_is_a_share() -> None:
    raw = _raw(30)
    p = fit_projection(raw, 2)
    ev = explained_variance(p, raw)
    assert 0.5 < ev < 1.0  # two components of three clusters in 1664-d noise: most, not all
    assert explained_variance(fit_projection(raw, 29), raw) == pytest.approx(1.0, abs=1e-4)  # rank 29
    assert explained_variance(random_projection(2), raw) < ev


def test_a_second_process_sees_a_saved_projection_once(tmp_path: Path) -> None:
    path = tmp_path / "mobs" / "projection.npz"
    a, b = ProjectionFile(path, DIM), ProjectionFile(path, DIM)
    assert a.current().version == b.current().version == f"rp-0-{DIM}"
    fitted = fit_projection(_raw(12), DIM)
    a.save(fitted)
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temporary file left behind
    assert b.current().version == fitted.version and b.loads == 1
    for _ in range(5):  # unchanged file: one stat per look, no new read
        assert b.current() is b.current()
    assert b.loads == 1
    # a second refit, seen by many threads at once: all get it, the file is read once
    again = fit_projection(_raw(24, seed=3), DIM)
    a.save(again)
    seen: list[str] = []
    barrier = threading.Barrier(8)

    def look() -> None:
        barrier.wait()
        seen.append(b.current().version)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [again.version] * 8 and b.loads == 2
    # a file of other sizes is ignored with a note; a removed file means the seeded random projection
    fit_projection(_raw(12), 16).save(path)
    assert b.current().version == f"rp-0-{DIM}" and "ignored" in b.notes[0]
    with pytest.raises(ValidationFailed):
        b.save(fit_projection(_raw(12), 16))
    os.remove(path)
    assert b.current().version == f"rp-0-{DIM}" and b.notes == ()


def test_an_unreadable_file_keeps_the_projection_in_use(tmp_path: Path) -> None:
    path = tmp_path / "projection.npz"
    files = ProjectionFile(path, DIM)
    fitted = fit_projection(_raw(12), DIM)
    files.save(fitted)
    path.write_bytes(b"not a projection")
    assert files.current().version == fitted.version and "unreadable" in files.notes[0]
    with pytest.raises(ValidationFailed) as err:
        ProjectionFile(path, DIM).current()
    assert err.value.code == "projection_corrupt"


class _SyntheticFeatures(LocalEmbedAdapter):
    """The local embedding adapter with raw features given by the test (the models are not the subject)."""

    def __init__(self, path: Path, raw: np.ndarray) -> None:
        super().__init__(SimpleNamespace(embedding_dim=DIM, projection_seed=0, frames=4, ocr_frames=0,
                                         scan_fps=1.0), AnalysisCache(), path)
        self.raw = raw

    def raw_features(self, request: Any, *, cancelled: Any = None) -> np.ndarray:
        return self.raw

    def fit(self, raw: np.ndarray) -> Any:
        """What the re-clustering's refit does: a PCA projection on stored raw features, saved for every worker."""
        proj = fit_projection(raw, DIM, seed=0)
        ProjectionFile(self.projection_path, DIM).save(proj)
        return proj


def test_another_worker_adapter_uses_the_refitted_projection_on_its_next_run(tmp_path: Path) -> None:
    path = tmp_path / "projection.npz"
    raw = _raw(1, seed=9)[0]
    worker1, worker2 = _SyntheticFeatures(path, raw), _SyntheticFeatures(path, raw)
    req = VideoAnalysisRequest(path=tmp_path / "clip.mp4", caption="", duration_s=3.0)
    before = worker2.run(req)
    assert before.model_version == f"rp-0-{DIM}" and isinstance(before, LocalEmbedResult)
    assert before.raw is not None and np.array_equal(before.raw, raw) and units_of("video.embed", req, before) == ("video_seconds", 3.0)
    fitted = worker1.fit(_raw(20))  # the refit, in "another process", saves the file
    after = worker2.run(req)
    assert after.model_version == fitted.version != before.model_version
    assert np.allclose(after.vector, fitted.project(raw), atol=1e-6)
    assert worker2.details()["projection_version"] == fitted.version


def test_video_tasks_count_seconds_of_video() -> None:
    req = VideoAnalysisRequest(path=Path("x.mp4"), duration_s=12.5)
    plain = EmbedResult(vector=np.ones(4, np.float32), model_version="v", frame_dim=0, text_dim=0, model="m")
    assert units_of("video.embed", req, plain) == ("video_seconds", 12.5)
    part = ParticipationResult(ocr_text=[], transcript="", words=[], hashtags=[], mentions=[], terms=[],
                               activity={"duration_s": 4.0}, components={}, score=0.0, model="m")
    assert units_of("video.participation", req, part) == ("video_seconds", 12.5)
    no_duration = VideoAnalysisRequest(path=Path("x.mp4"))
    assert units_of("video.participation", no_duration, part) == ("video_seconds", 4.0)
    assert units_of("video.embed", no_duration, plain) == (None, 0.0)
