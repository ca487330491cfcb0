"""ObjectStore adapters: the local disk store (default) and any S3 API (boto3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reelforge.adapters.storage.local import LocalObjectStore, check_put_headers
from reelforge.domain.keys import new_key, validate_key

if TYPE_CHECKING:
    from reelforge.adapters.storage.s3 import S3ObjectStore
    from reelforge.config import Settings
    from reelforge.ports.storage import ObjectStore

__all__ = [
    "LocalObjectStore",
    "S3ObjectStore",
    "build_object_store",
    "check_put_headers",
    "new_key",
    "validate_key",
]


def __getattr__(name: str) -> Any:
    # boto3 takes a noticeable share of start-up time; load it only when S3 is actually used.
    if name == "S3ObjectStore":
        from reelforge.adapters.storage.s3 import S3ObjectStore

        return S3ObjectStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_object_store(settings: Settings) -> ObjectStore:
    """The ObjectStore that ``settings.storage.backend`` names, configured from settings."""
    storage = settings.storage
    if storage.backend == "s3":
        from reelforge.adapters.storage.cdn import CdnUrlSigner
        from reelforge.adapters.storage.s3 import S3ObjectStore

        return S3ObjectStore(
            bucket=storage.s3_bucket,
            endpoint_url=storage.s3_endpoint_url,
            region=storage.s3_region,
            access_key=storage.s3_access_key,
            secret_key=storage.s3_secret_key,
            addressing_style=storage.s3_addressing_style,
            multipart_threshold=storage.multipart_threshold,
            part_size=storage.part_size,
            sse=storage.s3_sse,
            kms_key_id=storage.s3_kms_key_id,
            storage_classes=storage.s3_storage_classes,
            cdn=CdnUrlSigner.from_settings(storage),
        )
    return LocalObjectStore(
        root=settings.storage_root,
        signing_secret=settings.signing_secret,
        public_url=settings.public_url,
        multipart_threshold=storage.multipart_threshold,
        part_size=storage.part_size,
    )
