"""The participation score: how fully a video takes part in a trend, from what it shows, writes and says.

Components, each 0..1:
- ``text_overlay``: on-screen text found (letters and digits read by OCR, full at 12);
- ``speech``: recognised spoken words (full at 4);
- ``hashtags``: hashtags (full at 2; a mention counts half);
- ``motion``: paced movement: rises to 1 at a mean scan-frame change of 0.02, falls back to 0 for
  chaotic change (0.2 to 0.4: strobing, constant cuts);
- ``subject``: fraction of frames with a face or skin-tone subject;
- ``visual_quality``: coherent (natural-image), non-flat, non-black frames.
The score is their weighted mean with WEIGHTS.
"""

from __future__ import annotations

from typing import Any

WEIGHTS = {"text_overlay": 0.2, "speech": 0.2, "hashtags": 0.2, "motion": 0.15, "subject": 0.1,
           "visual_quality": 0.15}


def _clip(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def visual_quality(activity: dict[str, float]) -> float:
    """Natural, visible frames: coherence above 0.3 (full at 0.95), contrast (full at 0.2), not black.
    A hosted model that rates the footage itself reports ``visual_quality`` directly; that value is used."""
    if "visual_quality" in activity:
        return round(_clip(activity["visual_quality"]), 4)
    coherence = _clip((activity.get("coherence", 0.0) - 0.3) / 0.65)
    contrast = _clip(activity.get("contrast", 0.0) / 0.2)
    return round(coherence * contrast * (1.0 - _clip(activity.get("black_fraction", 0.0))), 4)


def ocr_chars(ocr_text: list[str]) -> int:
    return sum(ch.isalnum() for line in ocr_text for ch in line)


def components(*, ocr_text: list[str], words: list[dict[str, Any]], hashtags: list[str], mentions: list[str],
               activity: dict[str, float]) -> dict[str, float]:
    """The participation components (see the module docstring)."""
    motion = activity.get("motion", 0.0)
    pace = _clip(motion / 0.02) * (1.0 - _clip((motion - 0.2) / 0.2))
    return {
        "text_overlay": round(_clip(ocr_chars(ocr_text) / 12), 4),
        "speech": round(_clip(len(words) / 4), 4),
        "hashtags": round(_clip((len(hashtags) + 0.5 * len(mentions)) / 2), 4),
        "motion": round(pace, 4),
        "subject": round(_clip(activity.get("subject_presence", 0.0)), 4),
        "visual_quality": visual_quality(activity),
    }


def score(parts: dict[str, float]) -> float:
    """Weighted mean of the components present in WEIGHTS, 0..1."""
    total = sum(WEIGHTS[k] for k in parts if k in WEIGHTS)
    if total <= 0:
        return 0.0
    return round(sum(WEIGHTS[k] * v for k, v in parts.items() if k in WEIGHTS) / total, 4)
