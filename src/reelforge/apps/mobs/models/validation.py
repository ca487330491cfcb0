"""Validation: a weighted multimodal score with a reason per component and a configurable threshold.

Every component is a graded measure (0..1) of quality and relevance, not of presence:
- ``visual``: natural, sharp-edged, visible frames (participation.visual_quality: coherence between 0.3 and
  0.95, contrast up to 0.2, less the black or flat share);
- ``audio``: speech amount times clarity: recognised words (full at 6) times the recogniser's mean word
  confidence mapped from 0.4 (0) to 0.95 (1);
- ``ocr``: on-screen text amount times legibility: letters and digits read (full at 12) times the mean
  OCR confidence, weighted by line length, mapped from 0.6 (0) to 0.98 (1) (a hosted model that reports no
  confidence gets the amount alone, and the reason says so);
- ``hashtags``: agreement with the content: each hashtag's relevance is the share of its letters covered by
  words of the on-screen text or the transcript (3+ letters, or the whole text without spaces), full at 80%;
  a hashtag among the terms of the nearest mob the video lies within (`context_terms`) is half evidence
  (0.5); the component is 0.6 x the best hashtag's relevance + 0.4 x the mean over the first ten (so one fitting
  tag counts, and piling on unrelated trending tags does not help). Mentions alone give 0.1.
score = sum(w_c * c) / sum(w_c) over the configured weights; ``validated`` when score >= threshold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from reelforge.apps.mobs.models.participation import ocr_chars, visual_quality
from reelforge.apps.mobs.ports import ParticipationResult, ValidationResult
from reelforge.errors import ValidationFailed

COMPONENTS = ("visual", "audio", "ocr", "hashtags")
_TOKEN = re.compile(r"[a-z0-9]+")


def _mobs(settings: Any) -> Any:
    return getattr(settings, "mobs", settings)


def _clip(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def speech_quality(words: Sequence[dict[str, Any]]) -> tuple[float, float | None]:
    """(audio component, mean word confidence or None when the recogniser gave none)."""
    if not words:
        return 0.0, None
    probs = [float(w["probability"]) for w in words if isinstance(w, dict) and w.get("probability") is not None]
    amount = _clip(len(words) / 6)
    if not probs:
        return round(amount, 4), None
    conf = sum(probs) / len(probs)
    return round(amount * _clip((conf - 0.4) / 0.55), 4), conf


def text_legibility(lines: Sequence[str], scores: Sequence[float]) -> tuple[float, float | None]:
    """(ocr component, length-weighted mean OCR confidence or None when none was reported)."""
    chars = ocr_chars(list(lines))
    if chars == 0:
        return 0.0, None
    amount = _clip(chars / 12)
    if not scores or len(scores) != len(lines):
        return round(amount, 4), None
    weights = [max(1, ocr_chars([t])) for t in lines]
    conf = sum(w * float(s) for w, s in zip(weights, scores, strict=True)) / sum(weights)
    return round(amount * _clip((conf - 0.6) / 0.38), 4), conf


def content_words(*texts: str) -> tuple[set[str], str]:
    """Lower-case tokens of 3+ letters or digits, and all of the text's letters and digits run together."""
    tokens = [t for text in texts for t in _TOKEN.findall((text or "").casefold())]
    return {t for t in tokens if len(t) >= 3}, "".join(tokens)


def hashtag_relevance(tag: str, words: set[str], joined: str, context_terms: Iterable[str] = ()) -> float:
    """How well one hashtag agrees with the content (see the module docstring), 0..1."""
    h = "".join(_TOKEN.findall(tag.casefold().lstrip("#")))
    if not h:
        return 0.0
    if len(h) >= 3 and h in joined:
        return 1.0
    covered = [False] * len(h)
    for w in words:
        start = h.find(w)
        while start >= 0:
            for i in range(start, start + len(w)):
                covered[i] = True
            start = h.find(w, start + 1)
    rel = _clip((sum(covered) / len(h)) / 0.8)
    ctx = {str(t).casefold().lstrip("#") for t in context_terms}
    if h in ctx:
        rel = max(rel, 0.5)
    return round(rel, 4)


def hashtag_agreement(p: ParticipationResult, context_terms: Sequence[str] = ()) -> tuple[float, dict[str, float]]:
    """(hashtags component, relevance per hashtag)."""
    words, joined = content_words(" ".join(p.ocr_text), p.transcript)
    rel = {h: hashtag_relevance(h, words, joined, context_terms) for h in p.hashtags[:10]}
    if not rel:
        return (0.1 if p.mentions else 0.0), {}
    values = list(rel.values())
    return round(0.6 * max(values) + 0.4 * sum(values) / len(values), 4), rel


def validate_scores(p: ParticipationResult, settings: Any, *, context_terms: Sequence[str] = ()) -> ValidationResult:
    """Score one analysed video against `settings.mobs.validation_weights` and `validation_threshold`
    (a MobsSettings may be passed directly). `context_terms`: the top terms of the nearest mob the video
    lies within, if any (hashtag evidence)."""
    mobs = _mobs(settings)
    weights: dict[str, float] = dict(mobs.validation_weights)
    threshold = float(mobs.validation_threshold)
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValidationFailed(f"validation weights must be non-negative, not all zero, over {COMPONENTS}; "
                               f"got {weights}", code="invalid_weights")
    a = p.activity
    chars = ocr_chars(p.ocr_text)
    audio, conf = speech_quality(p.words)
    ocr, legible = text_legibility(p.ocr_text, list(getattr(p, "ocr_scores", None) or []))
    tags, rel = hashtag_agreement(p, context_terms)
    comps = {"visual": visual_quality(a), "audio": audio, "ocr": ocr, "hashtags": tags}
    if p.words:
        audio_reason = (f"audio {audio:.2f}: {len(p.words)} spoken words recognised"
                        + (f", mean confidence {conf:.2f}" if conf is not None else ", confidence not reported"))
    else:
        audio_reason = "audio 0.00: no speech recognised" + (f" ({'; '.join(p.notes)})" if p.notes else "")
    if chars:
        ocr_reason = (f"ocr {ocr:.2f}: {chars} characters of on-screen text ({'; '.join(p.ocr_text)[:80]})"
                      + (f", legibility (mean confidence) {legible:.2f}" if legible is not None
                         else ", legibility not reported"))
    else:
        ocr_reason = "ocr 0.00: no on-screen text found"
    if rel:
        tag_reason = (f"hashtags {tags:.2f}: agreement with the on-screen text, transcript and mob terms: "
                      + ", ".join(f"#{h} {r:.2f}" for h, r in rel.items()))
    else:
        tag_reason = f"hashtags {tags:.2f}: no hashtag" + (
            f", mentions {', '.join('@' + m for m in p.mentions)}" if p.mentions else "")
    reasons = [
        f"visual {comps['visual']:.2f}: coherence {a.get('coherence', 0.0):.2f}, "
        f"contrast {a.get('contrast', 0.0):.2f}, "
        f"black or flat frames {a.get('black_fraction', 0.0):.0%}",
        audio_reason, ocr_reason, tag_reason,
    ]
    total = sum(weights.values())
    value = round(sum(weights.get(k, 0.0) * comps[k] for k in COMPONENTS) / total, 4)
    status = "validated" if value >= threshold else "rejected"
    reasons.append(f"score {value:.2f} {'>=' if status == 'validated' else '<'} threshold {threshold:.2f}: {status}")
    return ValidationResult(status=status, score=value, components=comps, reasons=reasons, threshold=threshold)
