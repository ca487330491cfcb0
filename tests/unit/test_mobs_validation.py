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
            mentions: list[str] | None = None, notes: tuple[str, ...] = (), prob: float | None = 0.9,
            ocr_scores: list[float] | None = None, transcript: str | None = None) -> ParticipationResult:
    ws: list[dict[str, Any]] = [{"word": f"w{i}", "start": i * 0.3, "end": i * 0.3 + 0.2} for i in range(words)]
    if prob is not None:
        for w in ws:
            w["probability"] = prob
    parts = components(ocr_text=ocr, words=ws, hashtags=tags, mentions=mentions or [], activity=activity)
    return ParticipationResult(ocr_text=ocr, transcript=transcript if transcript is not None else
                               " ".join(w["word"] for w in ws), words=ws, hashtags=tags,
                               mentions=mentions or [], terms=[], activity=activity, components=parts,
                               score=score(parts), model="test", notes=notes,
                               ocr_scores=ocr_scores if ocr_scores is not None else [0.97] * len(ocr))


def test_trend_like_video_is_validated_with_reasons(tmp_path: Path) -> None:
    v = validate_scores(_result(ocr=["CAT DANCE TONIGHT"], words=6, tags=["catdance"], activity=NATURAL),
                        Settings(data_dir=tmp_path))
    assert v.status == "validated" and 0.85 < v.score < 1.0 and v.threshold == 0.5
    assert set(v.components) == {"visual", "audio", "ocr", "hashtags"}
    assert v.components["hashtags"] == 1.0  # "catdance" is written on screen
    assert any("#catdance 1.00" in r for r in v.reasons) and any("6 spoken words" in r for r in v.reasons)
    assert any("mean confidence 0.90" in r for r in v.reasons) and any("legibility" in r for r in v.reasons)


def test_components_are_graded_by_quality_not_presence(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    clear = validate_scores(_result(ocr=["SPACE WALK NOW"], words=6, tags=[], activity=NATURAL, prob=0.95), s)
    mumbled = validate_scores(_result(ocr=["SPACE WALK NOW"], words=6, tags=[], activity=NATURAL, prob=0.55), s)
    assert clear.components["audio"] == 1.0 and 0.2 < mumbled.components["audio"] < 0.4
    legible = validate_scores(_result(ocr=["SPACE WALK NOW"], words=0, tags=[], activity=NATURAL,
                                      ocr_scores=[0.98]), s)
    blurry = validate_scores(_result(ocr=["SPACE WALK NOW"], words=0, tags=[], activity=NATURAL,
                                     ocr_scores=[0.7]), s)
    assert legible.components["ocr"] == 1.0 and blurry.components["ocr"] < 0.3
    dull = validate_scores(_result(ocr=[], words=0, tags=[], activity={**NATURAL, "contrast": 0.1}), s)
    assert dull.components["visual"] == 0.5
    # Scores of different quality differ: a score that ranks.
    assert len({clear.score, mumbled.score, legible.score, blurry.score}) == 4


def test_hashtags_score_agreement_with_the_content(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    fits = _result(ocr=["LATTE ART"], words=0, tags=["latteartspeedrun"], activity=NATURAL,
                   transcript="speed run of my latte")
    off = _result(ocr=["LATTE ART"], words=0, tags=["moonwalk", "rocketlaunch"], activity=NATURAL)
    assert validate_scores(fits, s).components["hashtags"] == 1.0
    assert validate_scores(off, s).components["hashtags"] == 0.0
    # The nearest mob's terms are half evidence.
    assert validate_scores(off, s, context_terms=["#moonwalk", "moon"]).components["hashtags"] == pytest.approx(0.4)
    # Piling unrelated trending tags onto one that fits lowers the component.
    piled = _result(ocr=["LATTE ART"], words=0, tags=["latteart", "fyp", "viral", "moonwalk"], activity=NATURAL)
    assert 0.6 < validate_scores(piled, s).components["hashtags"] < 1.0


def test_hashtag_spam_on_noise_is_rejected_with_margin(tmp_path: Path) -> None:
    """The earlier score gave this clip 0.48 (any hashtag 1.0, textured frames 0.92 visual) against 0.5."""
    textured = {"motion": 0.03, "coherence": 0.92, "contrast": 0.17, "black_fraction": 0.0}
    spam = _result(ocr=[], words=0, tags=["catdance", "coffeeart", "spacewalk", "fyp", "viral"], activity=textured,
                   notes=("audio is silent: transcript is empty",))
    v = validate_scores(spam, Settings(data_dir=tmp_path))
    assert v.status == "rejected" and v.score < v.threshold - 0.2
    assert v.components["hashtags"] == 0.0


def test_noise_is_rejected_and_reasons_say_why(tmp_path: Path) -> None:
    v = validate_scores(_result(ocr=[], words=0, tags=[], activity=NOISE, notes=("no audio stream",)),
                        Settings(data_dir=tmp_path))
    assert v.status == "rejected" and v.score == 0.0
    text = " ".join(v.reasons)
    assert "no on-screen text" in text and "no speech" in text and "no audio stream" in text and "no hashtag" in text


def test_threshold_and_weights_come_from_settings(tmp_path: Path) -> None:
    p = _result(ocr=["CAT DANCE TONIGHT"], words=0, tags=[], activity=NATURAL, ocr_scores=[0.98])  # visual + ocr
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
