from __future__ import annotations

from typing import Any

from pydantic import Field

from reelforge.api.schemas.common import Public, Strict


class UploadCreate(Strict):
    filename: str | None = Field(default=None, max_length=500)
    content_type: str = Field(max_length=255, examples=["video/mp4"])
    size: int = Field(gt=0, description="Exact size in bytes")
    sha256: str | None = Field(default=None, pattern="^[0-9a-fA-F]{64}$")
    lifecycle: str = Field(default="hot", pattern="^(hot|infrequent|archive|temporary)$")
    multipart: bool | None = None


class SignedRequestPublic(Public):
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str | None


class UploadPart(Public):
    part_number: int
    url: str
    method: str = "PUT"
    headers: dict[str, str] = {}
    size: int


class UploadPublic(Public):
    id: str
    status: str
    filename: str | None
    content_type: str
    size: int | None
    lifecycle: str
    multipart: bool
    part_size: int | None
    expires_at: str | None
    asset_id: str | None
    put: SignedRequestPublic | None = None
    parts: list[UploadPart] | None = None


class CompletedPartIn(Strict):
    part_number: int = Field(ge=1, le=10000)
    etag: str = Field(min_length=1, max_length=200)


class UploadComplete(Strict):
    parts: list[CompletedPartIn] | None = Field(default=None, max_length=10000)
    sha256: str | None = Field(default=None, pattern="^[0-9a-fA-F]{64}$")


class AssetPublic(Public):
    id: str
    content_type: str
    size: int
    sha256: str
    lifecycle: str
    filename: str | None
    job_id: str | None
    metadata: dict[str, Any]
    created_at: str | None
    expires_at: str | None
    download: SignedRequestPublic | None = None


class AssetsPublic(Public):
    data: list[AssetPublic]
