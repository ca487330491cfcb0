"""Validation: a weighted multimodal score with a reason per component and a configurable threshold.

Components, each 0..1, computed from a ParticipationResult:
- ``visual``: coherent (natural-image), non-flat, non-black frames (participation.visual_quality);
- ``audio``: recognised speech (full at 3 words);
- ``ocr``: on-screen text (full at 8 letters or digits);
- ``hashtags``: 1 with a hashtag, 0.5 with only a mention, else 0.
score = sum(w_c * c) / sum(w_c) over the configured weights; ``validated`` when score >= threshold.
"""

from __future__ import annotations

from typing import Any

from reelforge.apps.mobs.models.participation import ocr_chars, visual_quality
from reelforge.apps.mobs.ports import ParticipationResult, ValidationResult
from reelforge.errors import ValidationFailed

COMPONENTS = ("visual", "audio", "ocr", "hashtags")


def _mobs(settings: Any) -> Any:
    return getattr(settings, "mobs", settings)


def validate_scores(p: ParticipationResult, settings: Any) -> ValidationResult:
    """Score one analysed video against `settings.mobs.validation_weights` and `validation_threshold`
    (a MobsSettings may be passed directly)."""
    mobs = _mobs(settings)
    weights: dict[str, float] = dict(mobs.validation_weights)
    threshold = float(mobs.validation_threshold)
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValidationFailed(f"validation weights must be non-negative, not all zero, over {COMPONENTS}; "
                               f"got {weights}", code="invalid_weights")
    a = p.activity
    chars = ocr_chars(p.ocr_text)
    comps = {
        "visual": visual_quality(a),
        "audio": round(min(1.0, len(p.words) / 3), 4),
        "ocr": round(min(1.0, chars / 8), 4),
        "hashtags": 1.0 if p.hashtags else (0.5 if p.mentions else 0.0),
    }
    reasons = [
        f"visual {comps['visual']:.2f}: coherence {a.get('coherence', 0.0):.2f}, "
        f"contrast {a.get('contrast', 0.0):.2f}, "
        f"black or flat frames {a.get('black_fraction', 0.0):.0%}",
        (f"audio {comps['audio']:.2f}: {len(p.words)} spoken words recognised" if p.words else
         "audio 0.00: no speech recognised" + (f" ({'; '.join(p.notes)})" if p.notes else "")),
        (f"ocr {comps['ocr']:.2f}: {chars} characters of on-screen text ({'; '.join(p.ocr_text)[:80]})" if chars
         else "ocr 0.00: no on-screen text found"),
        (f"hashtags {comps['hashtags']:.2f}: " + ", ".join("#" + h for h in p.hashtags) if p.hashtags else
         f"hashtags {comps['hashtags']:.2f}: no hashtag" + (f", mentions {', '.join('@' + m for m in p.mentions)}"
                                                           if p.mentions else "")),
    ]
    total = sum(weights.values())
    value = round(sum(weights.get(k, 0.0) * comps[k] for k in COMPONENTS) / total, 4)
    status = "validated" if value >= threshold else "rejected"
    reasons.append(f"score {value:.2f} {'>=' if status == 'validated' else '<'} threshold {threshold:.2f}: {status}")
    return ValidationResult(status=status, score=value, components=comps, reasons=reasons, threshold=threshold)
