"""Video understanding ("mobs"): participation analysis, embeddings, validation and thumbnails.

Tasks: TASK_PARTICIPATION (local: frames + OCR + speech + activity; hosted: TwelveLabs Pegasus) and
TASK_EMBED (local: MobileNetV2 + MiniLM + projection; hosted: TwelveLabs Marengo). Each task has a "local"
and a "bedrock" adapter; `settings.mobs.participation_adapter` / `embed_adapter` say which one a pipeline
uses (`adapter_name`). Importing this package imports no ML library; models load on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelforge.apps.mobs.models.embeddings import (
    RAW_DIM,
    Projection,
    ProjectionFile,
    explained_variance,
    fit_projection,
    random_projection,
)
from reelforge.apps.mobs.models.frames import thumbnail
from reelforge.apps.mobs.models.tasks import TASK_EMBED, TASK_PARTICIPATION
from reelforge.apps.mobs.models.validation import validate_scores
from reelforge.apps.mobs.ports import EmbedResult, ParticipationResult, ValidationResult, VideoAnalysisRequest

if TYPE_CHECKING:
    from reelforge.ports.models import ModelAdapter

__all__ = [
    "RAW_DIM",
    "TASK_EMBED",
    "TASK_PARTICIPATION",
    "EmbedResult",
    "ParticipationResult",
    "Projection",
    "ProjectionFile",
    "ValidationResult",
    "VideoAnalysisRequest",
    "adapter_name",
    "explained_variance",
    "fit_projection",
    "projection_file",
    "projection_path",
    "random_projection",
    "thumbnail",
    "validate_scores",
    "video_understanding_adapters",
]


def projection_path(settings: Any) -> Path:
    """Where the fitted local projection is kept (settings.mobs.projection_path or data_dir/mobs/projection.npz)."""
    mobs = settings.mobs
    return Path(mobs.projection_path) if mobs.projection_path else Path(settings.data_dir) / "mobs" / "projection.npz"


def projection_file(settings: Any) -> ProjectionFile:
    """The local embedding's current projection as kept at `projection_path(settings)`, in settings' sizes."""
    mobs = settings.mobs
    return ProjectionFile(projection_path(settings), int(mobs.embedding_dim), seed=int(mobs.projection_seed))


def adapter_name(settings: Any, task: str) -> str:
    """The adapter name ("local" | "bedrock") that settings choose for `task`."""
    if task == TASK_PARTICIPATION:
        return str(settings.mobs.participation_adapter)
    if task == TASK_EMBED:
        return str(settings.mobs.embed_adapter)
    raise KeyError(task)


def video_understanding_adapters(settings: Any) -> list[ModelAdapter]:
    """Every video-understanding adapter: local and bedrock, for both tasks. The two local ones share one
    per-file analysis cache, so a video is decoded, read and transcribed once for both."""
    from reelforge.apps.mobs.models.bedrock import MarengoEmbedAdapter, PegasusParticipationAdapter
    from reelforge.apps.mobs.models.local import (
        AnalysisCache,
        LocalEmbedAdapter,
        LocalParticipationAdapter,
    )

    cache = AnalysisCache()
    return [
        LocalParticipationAdapter(settings.mobs, cache),
        LocalEmbedAdapter(settings.mobs, cache, projection_path(settings)),
        PegasusParticipationAdapter(settings.mobs),
        MarengoEmbedAdapter(settings.mobs),
    ]
