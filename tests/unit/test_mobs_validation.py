"""Validation: weighted multimodal score, reasons per component, threshold from settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reelforge.apps.mobs.models import ParticipationResult, validate_scores
from reelforge.apps.mobs.models.participation import components, score
from reelforge.config import Settings
from reelforge.errors import ValidationFailed

NATURAL = {"motion": 0.02, "scene_cuts": 0.0, "subject_presence": 1.0, "coherence": 0.95, "contrast": 0.3,
           "black_fraction": 0.0}
NOISE = {"motion": 0.03, "scene_cuts": 0.0, "subject_presence": 0.0, "coherence": 0.0, "contrast": 0.18,
         "black_fraction": 0.0}


def _result(*, ocr: list[str], words: int, tags: list[str], activity: dict[str, float],
            mentions: list[str] | None = None, notes: tuple[str, ...] = ()) -> ParticipationResult:
    ws: list[dict[str, Any]] = [{"word": f"w{i}", "start": i * 0.3, "end": i * 0.3 + 0.2} for i in range(words)]
    parts = components(ocr_text=ocr, words=ws, hashtags=tags, mentions=mentions or [], activity=activity)
    return ParticipationResult(ocr_text=ocr, transcript=" ".join(w["word"] for w in ws), words=ws, hashtags=tags,
                               mentions=mentions or [], terms=[], activity=activity, components=parts,
                               score=score(parts), model="test", notes=notes)


def test_trend_like_video_is_validated_with_reasons(tmp_path: Path) -> None:
    v = validate_scores(_result(ocr=["CAT DANCE"], words=5, tags=["catdance"], activity=NATURAL),
                        Settings(data_dir=tmp_path))
    assert v.status == "validated" and v.score == 1.0 and v.threshold == 0.5
    assert set(v.components) == {"visual", "audio", "ocr", "hashtags"}
    assert any("#catdance" in r for r in v.reasons) and any("5 spoken words" in r for r in v.reasons)


def test_noise_is_rejected_and_reasons_say_why(tmp_path: Path) -> None:
    v = validate_scores(_result(ocr=[], words=0, tags=[], activity=NOISE, notes=("no audio stream",)),
                        Settings(data_dir=tmp_path))
    assert v.status == "rejected" and v.score == 0.0
    text = " ".join(v.reasons)
    assert "no on-screen text" in text and "no speech" in text and "no audio stream" in text and "no hashtag" in text


def test_threshold_and_weights_come_from_settings(tmp_path: Path) -> None:
    p = _result(ocr=["CAT DANCE"], words=0, tags=[], activity=NATURAL)  # visual + ocr only
    base = Settings(data_dir=tmp_path)
    assert validate_scores(p, base).score == 0.5
    assert validate_scores(p, base).status == "validated"
    strict = base.model_copy(update={"mobs": base.mobs.model_copy(update={"validation_threshold": 0.6})})
    assert validate_scores(p, strict).status == "rejected"
    audio_heavy = base.mobs.model_copy(update={"validation_weights": {"visual": 1, "audio": 3, "ocr": 1,
                                                                        "hashtags": 0}})
    assert validate_scores(p, audio_heavy).score == pytest.approx(0.4)
    with pytest.raises(ValidationFailed):
        validate_scores(p, base.mobs.model_copy(update={"validation_weights": {"smell": 1.0}}))


def test_participation_components_penalise_chaos_and_reward_content() -> None:
    calm = components(ocr_text=["SPACE WALK"], words=[{}] * 4, hashtags=["a", "b"], mentions=[], activity=NATURAL)
    assert calm == {"text_overlay": 0.75, "speech": 1.0, "hashtags": 1.0, "motion": 1.0, "subject": 1.0,
                    "visual_quality": 1.0}
    strobe = components(ocr_text=[], words=[], hashtags=[], mentions=[], activity={**NATURAL, "motion": 0.45})
    assert strobe["motion"] == 0.0
    assert score(calm) > 0.9 > score(strobe)
