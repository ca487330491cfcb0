"""Video understanding's settings section: `mobs` (REELFORGE_MOBS__...)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class MobsBedrockSettings(BaseModel):
    """Hosted TwelveLabs models on Amazon Bedrock (used when a mobs task's adapter is "bedrock")."""

    region: str = "us-east-1"
    endpoint_url: str = ""  # empty: the AWS endpoint for the region
    s3_endpoint_url: str = ""  # empty: AWS S3
    access_key_id: str = ""  # empty: boto3's default credential chain
    secret_access_key: str = ""
    bucket: str = ""  # uploads of large videos and StartAsyncInvoke output; required for Marengo
    prefix: str = "mobs-bedrock/"
    bucket_owner: str = ""
    pegasus_model_id: str = "twelvelabs.pegasus-1-2-v1:0"
    marengo_model_id: str = "twelvelabs.marengo-embed-2-7-v1:0"
    inline_max_bytes: int = Field(default=20 * 1024**2, ge=0)  # larger videos go through the bucket
    poll_interval_s: float = Field(default=2.0, gt=0)
    timeout_s: float = Field(default=900.0, gt=0)


class MobsSettings(BaseModel):
    """Video understanding: sampling, validation weights and threshold, embedding size, adapters per task."""

    frames: int = Field(default=8, ge=1, le=64)
    ocr_frames: int = Field(default=3, ge=0, le=32)
    scan_fps: float = Field(default=6.0, gt=0, le=30)
    embedding_dim: int = Field(default=256, ge=8, le=4096)
    projection_seed: int = 0
    # Where the fitted projection lives; empty means data_dir / "mobs" / "projection.npz".
    projection_path: str = ""
    # The re-clustering refits the projection (PCA) once this many validated local-model videos have raw
    # features, and again whenever that number has more than doubled since the last fit.
    projection_min_videos: int = Field(default=20, ge=8)
    # ... and at least this many videos per dimension of the projection (2 x 256 = 512 by default); 0 turns
    # the requirement off.
    projection_samples_per_dim: float = Field(default=2.0, ge=0.0)
    validation_weights: dict[str, float] = Field(
        default_factory=lambda: {"visual": 0.25, "audio": 0.25, "ocr": 0.25, "hashtags": 0.25}
    )
    validation_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    participation_adapter: Literal["local", "bedrock"] = "local"
    embed_adapter: Literal["local", "bedrock"] = "local"
    bedrock: MobsBedrockSettings = Field(default_factory=MobsBedrockSettings)
    # Application layer (services/mobs.py, services/clustering.py).
    # A validated video joins the nearest mob when its cosine distance to the centroid is at most this.
    mob_distance_threshold: float = Field(default=0.35, gt=0.0, le=2.0)
    # A mob of at least `mob_spread_min_members` members accepts within mean + z x std of its members'
    # distances to its centroid (or margin x the farthest's), between mob_distance_threshold and this cap
    # (clustering.OnlineParams).
    mob_distance_cap: float = Field(default=0.4, gt=0.0, le=2.0)
    mob_spread_z: float = Field(default=2.5, ge=0.0, le=10.0)
    # ... or this many times its farthest member's distance, whichever is larger.
    mob_spread_margin: float = Field(default=1.2, ge=1.0, le=3.0)
    mob_spread_min_members: int = Field(default=3, ge=2, le=1000)
    # Two mobs whose centroids lie within the larger of their join thresholds are merged on assignment.
    mob_merge_check: bool = True
    # When a new mob starts and at least this many videos are validated, the re-clustering runs at once (in a
    # thread), at most once per interval; 0 turns it off.
    quick_recluster_min_videos: int = Field(default=6, ge=0)
    quick_recluster_min_interval_s: float = Field(default=30.0, ge=0.0)
    # k-means restarts of the quick re-cluster (the scheduled one runs 10); it never refits the projection,
    # the scheduled run does.
    quick_recluster_n_init: int = Field(default=4, ge=1, le=50)
    # Hourly batch re-clustering (one runner per tick across workers); 0 turns it off.
    recluster_interval_s: float = Field(default=3600.0, ge=0.0)
    # k-means tries every k in [k_min, k_max] (capped at n - 1) and keeps the best mean silhouette.
    recluster_k_min: int = Field(default=2, ge=2, le=100)
    recluster_k_max: int = Field(default=12, ge=2, le=200)
    # Below this best silhouette the videos are taken as one group (no structure worth splitting).
    recluster_min_silhouette: float = Field(default=0.1, ge=-1.0, le=1.0)
    recluster_seed: int = 0
    feed_page_size: int = Field(default=24, ge=1, le=200)
    # Similar search leaves out videos less similar than this (cosine similarity); the response says when fewer
    # than k pass. A request may ask for a stricter or looser one (`minSimilarity`).
    similar_min_score: float = Field(default=0.3, ge=-1.0, le=1.0)
    # Load the local models when a worker starts (not with the first video), where the adapters are local.
    preload_models: bool = True
    mob_name_terms: int = Field(default=2, ge=1, le=5)
    top_terms: int = Field(default=8, ge=1, le=50)
    max_upload_bytes: int = Field(default=200 * 1024**2, gt=0)
    # Caps on top of the platform's media policy (settings `media`): short clips up to 4K, which the analysis
    # steps decode within their declared memory.
    max_side: int = Field(default=4096, ge=16)
    max_pixels: int = Field(default=3840 * 2160, ge=256)
    max_duration_s: float = Field(default=600.0, gt=0)
