"""Uploads by signed URL, assets, and the outputs pipelines store."""

from __future__ import annotations

import builtins
import contextlib
import math
import mimetypes
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

from reelforge import errors
from reelforge.config import Settings
from reelforge.domain.keys import new_key
from reelforge.domain.records import Asset, Upload
from reelforge.domain.types import Lifecycle, Principal
from reelforge.ports.repositories import Store
from reelforge.ports.storage import CompletedPart, ObjectStore, SignedRequest
from reelforge.services.ownership import owned

CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_PARTS = 10_000
MIN_PART = 5 * 1024 * 1024
TEMPORARY_TTL_S = 24 * 3600


def safe_filename(name: str | None) -> str | None:
    if not name:
        return None
    name = Path(name.replace("\\", "/")).name
    name = re.sub(r"[^\w.\- ()]+", "_", name).strip(" .")
    return name[:200] or None


def ext_for(filename: str | None, content_type: str) -> str:
    if filename and "." in filename:
        ext = "." + filename.rsplit(".", 1)[1].lower()
        if re.fullmatch(r"\.[a-z0-9]{1,10}", ext):
            return ext
    guessed = mimetypes.guess_extension(content_type) or ""
    return guessed if re.fullmatch(r"\.[a-z0-9]{1,10}", guessed) else ""


class _Slice:
    """The next ``length`` bytes of an open file as a stream, so a part goes to the store without a copy in memory."""

    def __init__(self, f: Any, length: int) -> None:
        self._f = f
        self._left = length

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data: bytes = self._f.read(self._left if n < 0 else min(n, self._left))
        self._left -= len(data)
        return data


@dataclass
class UploadTicket:
    upload: Upload
    put: SignedRequest | None = None
    parts: list[tuple[int, SignedRequest]] = field(default_factory=list)


class AssetService:
    def __init__(self, store: Store, objects: ObjectStore, settings: Settings) -> None:
        self.store = store
        self.objects = objects
        self.settings = settings

    # --- uploads ------------------------------------------------------------------------------
    def create_upload(self, principal: Principal, *, filename: str | None, content_type: str, size: int,
                      sha256: str | None = None, lifecycle: str = "hot", multipart: bool | None = None) -> UploadTicket:
        """A signed PUT (or one signed URL per part) bound to key, content type, size and expiry."""
        cfg = self.settings.storage
        content_type = content_type.strip().lower()
        if not CONTENT_TYPE_RE.match(content_type):
            raise errors.ValidationFailed("Not a valid content type", code="invalid_content_type",
                                          field="content_type")
        if size <= 0:
            raise errors.ValidationFailed("Size must be positive", code="invalid_size", field="size")
        if size > cfg.max_upload_bytes:
            raise errors.PayloadTooLarge(f"Uploads are limited to {cfg.max_upload_bytes} bytes",
                                         code="upload_too_large", limit=cfg.max_upload_bytes)
        if sha256 is not None and not SHA256_RE.match(sha256.lower()):
            raise errors.ValidationFailed("sha256 must be 64 hex digits", code="invalid_checksum", field="sha256")
        if lifecycle not in Lifecycle.__members__:
            raise errors.ValidationFailed("Unknown lifecycle class", code="invalid_lifecycle", field="lifecycle")
        filename = safe_filename(filename)
        key = new_key(f"{principal.user_id}/uploads", ext_for(filename, content_type))
        use_multipart = size > cfg.multipart_threshold if multipart is None else multipart
        part_size = max(cfg.part_size, MIN_PART, math.ceil(size / MAX_PARTS))
        ticket = UploadTicket(upload=None)  # type: ignore[arg-type]
        with self.store.tx() as tx:
            expires_at = tx.now() + cfg.upload_expiry_s
        if use_multipart:
            multipart_id = self.objects.create_multipart(key, content_type, lifecycle=lifecycle)
            count = math.ceil(size / part_size)
            # Each part's URL is signed for that part's size: a part can never carry more than its share.
            ticket.parts = [(n, self.objects.presign_part(key, multipart_id, n, cfg.upload_expiry_s,
                                                          max_size=min(part_size, size - (n - 1) * part_size)))
                            for n in range(1, count + 1)]
        else:
            multipart_id, count = None, None
            ticket.put = self.objects.presign_put(key, content_type, size, cfg.upload_expiry_s, lifecycle=lifecycle)
        with self.store.tx() as tx:
            ticket.upload = tx.assets.add_upload(
                owner_id=principal.user_id, key=key, content_type=content_type, filename=filename, max_size=size,
                declared_size=size, sha256=sha256.lower() if sha256 else None, lifecycle=lifecycle,
                multipart_id=multipart_id, part_size=part_size if multipart_id else None, parts_count=count,
                expires_at=expires_at,
            )
        return ticket

    def get_upload(self, principal: Principal, upload_id: str) -> Upload:
        with self.store.tx(write=False) as tx:
            return owned(tx.assets.upload(upload_id), principal, "Upload")

    def upload_for_key(self, key: str) -> Upload | None:
        """The upload an object key was issued for (the local store's signed PUT checks it is still open)."""
        with self.store.tx(write=False) as tx:
            return tx.assets.upload_by_key(key)

    def complete_upload(self, principal: Principal, upload_id: str, *, parts: list[tuple[int, str]] | None = None,
                        sha256: str | None = None) -> Asset:
        """Check size and checksum of what arrived and turn it into an asset (idempotent once completed)."""
        with self.store.tx(write=False) as tx:
            up = owned(tx.assets.upload(upload_id), principal, "Upload")
            if up.status == "completed" and up.asset_id:
                asset = tx.assets.asset(up.asset_id)
                if asset is not None:
                    return asset
            if up.status != "pending":
                raise errors.Conflict(f"Upload is {up.status}", code="upload_not_pending")
            if up.expires_at < tx.now():
                raise errors.Gone("Upload expired; start a new one", code="upload_expired")
        expected = (sha256 or up.sha256 or "").lower() or None
        if expected and not SHA256_RE.match(expected):
            raise errors.ValidationFailed("sha256 must be 64 hex digits", code="invalid_checksum", field="sha256")
        if up.multipart_id:
            if not parts:
                raise errors.ValidationFailed("parts are required for a multipart upload", code="parts_required",
                                              field="parts")
            self.objects.complete_multipart(up.key, up.multipart_id,
                                            [CompletedPart(n, etag) for n, etag in sorted(parts)])
        if self.objects.head(up.key) is None:
            raise errors.Conflict("Nothing was uploaded yet", code="upload_missing")
        info = self.objects.verify(up.key)
        problem: errors.ReelforgeError | None = None
        if up.declared_size is not None and info.size != up.declared_size:
            problem = errors.ValidationFailed(
                f"Uploaded {info.size} bytes, declared {up.declared_size}", code="size_mismatch",
                received=info.size, declared=up.declared_size)
        elif expected and info.sha256 != expected:
            problem = errors.ChecksumMismatch("The uploaded bytes do not match the sha256 given",
                                              received=info.sha256, expected=expected)
        if problem is not None:
            # The bad object goes; the upload stays pending so the client can send it again before expiry.
            self.objects.delete(up.key)
            if up.multipart_id:
                with self.store.tx() as tx:
                    tx.assets.update_upload(up.id, status="aborted")
            raise problem
        with self.store.tx() as tx:
            row = tx.assets.upload(up.id, lock=True)
            assert row is not None
            if row.status == "completed" and row.asset_id:
                existing = tx.assets.asset(row.asset_id)
                assert existing is not None
                return existing
            asset = tx.assets.add_asset(owner_id=up.owner_id, key=up.key, content_type=up.content_type,
                                        size=info.size, sha256=info.sha256, lifecycle=up.lifecycle,
                                        filename=up.filename, meta={},
                                        expires_at=(tx.now() + TEMPORARY_TTL_S) if up.lifecycle == "temporary"
                                        else None)
            tx.assets.update_upload(up.id, status="completed", asset_id=asset.id)
            return asset

    def abort_upload(self, principal: Principal, upload_id: str) -> Upload:
        with self.store.tx() as tx:
            up = owned(tx.assets.upload(upload_id), principal, "Upload")
            if up.status != "pending":
                raise errors.Conflict(f"Upload is {up.status}", code="upload_not_pending")
            tx.assets.update_upload(up.id, status="aborted")
            up = replace(up, status="aborted")
        self._discard_upload(up)
        return up

    def _discard_upload(self, up: Upload) -> None:
        if up.multipart_id:
            try:
                self.objects.abort_multipart(up.key, up.multipart_id)
            except errors.ReelforgeError:
                pass
        self.objects.delete(up.key)

    # --- assets --------------------------------------------------------------------------------
    def get(self, principal: Principal, asset_id: str) -> Asset:
        with self.store.tx(write=False) as tx:
            return owned(tx.assets.asset(asset_id), principal, "Asset")

    async def read(self, principal: Principal, asset_id: str) -> Any:
        """`get()` on the event loop (adapters/db/reads.py): the asset's columns, the owner's only."""
        row = await self.store.reads.asset(asset_id)
        return owned(row, principal, "Asset")

    def download_url(self, asset: Asset) -> SignedRequest:
        return self.objects.presign_get(asset.key, self.settings.storage.download_expiry_s, filename=asset.filename,
                                        content_type=asset.content_type)

    def list(self, principal: Principal, *, limit: int = 50, before: float | None = None,
             job_id: str | None = None) -> list[Asset]:
        with self.store.tx(write=False) as tx:
            return list(tx.assets.assets(owner_id=principal.user_id, limit=limit, before=before, job_id=job_id))

    def delete(self, principal: Principal, asset_id: str) -> None:
        with self.store.tx() as tx:
            asset = owned(tx.assets.asset(asset_id), principal, "Asset")
            tx.assets.delete_asset(asset.id)
        self.objects.delete(asset.key)

    def read_owned(self, owner_id: str, asset_id: str) -> tuple[Asset, bytes]:
        """For pipelines: a job may read only its owner's assets."""
        with self.store.tx(write=False) as tx:
            asset = tx.assets.asset(asset_id, owner_id=owner_id)
        if asset is None:
            raise errors.NotFound("Asset not found", code="asset_not_found")
        return asset, self.objects.get_bytes(asset.key)

    def store_output(self, *, owner_id: str, job_id: str | None, data: bytes, content_type: str,
                     filename: str | None = None, lifecycle: str = "hot", metadata: dict[str, Any] | None = None,
                     category: str = "outputs", asset_id: str | None = None) -> Asset:
        """Store bytes a job produced and register the asset. With asset_id, a retried step reuses its asset."""
        existing = self._existing_output(asset_id)
        if existing is not None:
            return existing
        key = new_key(f"{owner_id}/{category}", ext_for(filename, content_type))
        info = self.objects.put_bytes(key, data, content_type, lifecycle=lifecycle)
        return self._register_output(owner_id=owner_id, job_id=job_id, key=key, info=info,
                                     content_type=content_type, filename=filename, lifecycle=lifecycle,
                                     metadata=metadata, asset_id=asset_id)

    def _existing_output(self, asset_id: str | None) -> Asset | None:
        """A retried step's output, stored by an earlier attempt under the same id."""
        if not asset_id:
            return None
        with self.store.tx(write=False) as tx:
            return tx.assets.asset(asset_id)

    def _register_output(self, *, owner_id: str, job_id: str | None, key: str, info: Any, content_type: str,
                         filename: str | None, lifecycle: str, metadata: dict[str, Any] | None,
                         asset_id: str | None) -> Asset:
        with self.store.tx() as tx:
            extra = {"id": asset_id} if asset_id else {}
            return tx.assets.add_asset(owner_id=owner_id, key=key, content_type=content_type, size=info.size,
                                       sha256=info.sha256, lifecycle=lifecycle, filename=safe_filename(filename),
                                       job_id=job_id, meta=metadata or {},
                                       expires_at=(tx.now() + TEMPORARY_TTL_S) if lifecycle == "temporary" else None,
                                       **extra)

    def store_output_file(self, path: Path, *, owner_id: str, job_id: str | None, content_type: str,
                          filename: str | None = None, lifecycle: str = "hot",
                          metadata: dict[str, Any] | None = None, category: str = "outputs",
                          asset_id: str | None = None, multipart_threshold: int | None = None,
                          part_size: int | None = None) -> Asset:
        """Store a file a job produced, streamed from disk, and register the asset.

        Above ``multipart_threshold`` (default: the storage setting) the file goes up as a multipart
        upload through the ObjectStore port, ``part_size`` bytes per part, each streamed from disk to the
        store, so memory stays flat whatever the size. With ``asset_id`` a retried step reuses its asset; a retry of
        an interrupted upload starts a new one (the sweeper removes abandoned parts).
        """
        existing = self._existing_output(asset_id)
        if existing is not None:
            return existing
        path = Path(path)
        size = path.stat().st_size
        cfg = self.settings.storage
        threshold = cfg.multipart_threshold if multipart_threshold is None else multipart_threshold
        psize = max(part_size or cfg.part_size, MIN_PART, math.ceil(size / MAX_PARTS))
        key = new_key(f"{owner_id}/{category}", ext_for(filename, content_type))
        if size > threshold:
            upload_id = self.objects.create_multipart(key, content_type, lifecycle=lifecycle)
            try:
                parts: builtins.list[CompletedPart] = []
                with open(path, "rb") as f:
                    for number, offset in enumerate(range(0, size, psize), start=1):
                        length = min(psize, size - offset)
                        part = cast(BinaryIO, _Slice(f, length))
                        parts.append(self.objects.upload_part(key, upload_id, number, part, max_size=length))
                info = self.objects.complete_multipart(key, upload_id, parts)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.objects.abort_multipart(key, upload_id)
                raise
            metadata = {**(metadata or {}), "multipart_parts": len(parts)}
        else:
            info = self.objects.put_file(key, path, content_type, lifecycle=lifecycle)
        return self._register_output(owner_id=owner_id, job_id=job_id, key=key, info=info,
                                     content_type=content_type, filename=filename, lifecycle=lifecycle,
                                     metadata=metadata, asset_id=asset_id)

    def fetch_to(self, asset: Asset, path: Path) -> None:
        """Download an asset's object to a local file, checked against the asset record's size and sha256."""
        info = self.objects.download_to(asset.key, Path(path))
        if info.size != asset.size or (asset.sha256 and info.sha256 != asset.sha256):
            Path(path).unlink(missing_ok=True)
            raise errors.ChecksumMismatch("The stored object does not match its asset record", asset_id=asset.id)

    def owned_asset(self, owner_id: str, asset_id: str) -> Asset:
        """For pipelines: the asset record, if it belongs to the job's owner (else 404 asset_not_found)."""
        with self.store.tx(write=False) as tx:
            asset = tx.assets.asset(asset_id, owner_id=owner_id)
        if asset is None:
            raise errors.NotFound("Asset not found", code="asset_not_found", asset_id=asset_id)
        return asset

    def delete_owned(self, owner_id: str, asset_ids: builtins.list[str]) -> int:
        """For pipelines: delete some of the owner's assets (objects first, then rows); missing ones are skipped."""
        removed = 0
        for asset_id in asset_ids:
            with self.store.tx(write=False) as tx:
                asset = tx.assets.asset(asset_id, owner_id=owner_id)
            if asset is None:
                continue
            self.objects.delete(asset.key)
            with self.store.tx() as tx:
                tx.assets.delete_asset(asset.id)
            removed += 1
        return removed

    # --- sweeping --------------------------------------------------------------------------------
    def sweep(self) -> dict[str, int]:
        """Delete expired temporary assets and abandoned uploads, objects first, then rows."""
        counts = {"assets": 0, "uploads": 0}
        with self.store.tx(write=False) as tx:
            assets = list(tx.assets.expired_assets())
            uploads = list(tx.assets.expired_uploads())
        for a in assets:
            self.objects.delete(a.key)
            with self.store.tx() as tx:
                tx.assets.delete_asset(a.id)
            counts["assets"] += 1
        for up in uploads:
            self._discard_upload(up)
            with self.store.tx() as tx:
                tx.assets.update_upload(up.id, status_was="pending", status="expired")
            counts["uploads"] += 1
        return counts

    def delete_job_temporaries(self, job_id: str) -> int:
        with self.store.tx(write=False) as tx:
            assets = list(tx.assets.temporary_assets_of_job(job_id))
        for a in assets:
            self.objects.delete(a.key)
            with self.store.tx() as tx:
                tx.assets.delete_asset(a.id)
        return len(assets)
