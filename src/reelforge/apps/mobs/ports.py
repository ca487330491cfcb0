"""Video understanding's model tasks: request and result types of its adapters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class VideoAnalysisRequest:
    """One local video file to analyse; `caption` is the uploader's text (hashtags and mentions count)."""

    path: Path
    caption: str = ""
    duration_s: float | None = None


@dataclass(frozen=True)
class ParticipationResult:
    """What a video shows, says and writes, and how much it takes part (score 0..1, with its components)."""

    ocr_text: list[str]
    transcript: str
    words: list[dict[str, Any]]  # {word, start, end, probability}
    hashtags: list[str]
    mentions: list[str]
    terms: list[str]
    activity: dict[str, float]  # motion, scene_cuts, subject_presence, ...
    components: dict[str, float]
    score: float
    model: str
    notes: tuple[str, ...] = ()
    ocr_scores: list[float] = field(default_factory=list)  # the OCR confidence of each ocr_text line (local)


@dataclass(frozen=True)
class EmbedResult:
    """A video's embedding: float32, `dim` long, unit norm, in the space named by `model_version`."""

    vector: np.ndarray
    model_version: str
    frame_dim: int
    text_dim: int
    model: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationResult:
    """The weighted multimodal check: `validated` when score >= threshold, else `rejected`."""

    status: str  # "validated" | "rejected"
    score: float
    components: dict[str, float]
    reasons: list[str]
    threshold: float
