"""Assets (stored objects and their records) and the uploads that become them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update

from reelforge.adapters.db import models as m
from reelforge.adapters.db.engine import db_epoch
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.records import Asset, Upload, new_id


class AssetRepository(Repository):
    # --- assets ----------------------------------------------------------------------------------
    def add_asset(self, **values: Any) -> Asset:
        values.setdefault("id", new_id())
        asset = m.Asset(created_at=self.now(), **values)
        self.s.add(asset)
        self.flush()
        return record(Asset, asset)

    def asset(self, asset_id: str, *, owner_id: str | None = None) -> Asset | None:
        q = select(m.Asset).where(m.Asset.id == asset_id)
        if owner_id is not None:
            q = q.where(m.Asset.owner_id == owner_id)
        row = self.s.execute(q).scalar_one_or_none()
        return record(Asset, row) if row is not None else None

    def assets(self, *, owner_id: str, limit: int = 50, before: float | None = None,
               job_id: str | None = None) -> list[Asset]:
        q = select(m.Asset).where(m.Asset.owner_id == owner_id)
        if before is not None:
            q = q.where(m.Asset.created_at < before)
        if job_id:
            q = q.where(m.Asset.job_id == job_id)
        return records(Asset, self.s.execute(q.order_by(m.Asset.created_at.desc()).limit(limit)).scalars().all())

    def expired_assets(self, limit: int = 500) -> list[Asset]:
        return records(Asset, self.s.execute(
            select(m.Asset).where(m.Asset.expires_at.is_not(None), m.Asset.expires_at < db_epoch()).limit(limit)
        ).scalars().all())

    def temporary_assets_of_job(self, job_id: str) -> list[Asset]:
        return records(Asset, self.s.execute(
            select(m.Asset).where(m.Asset.job_id == job_id, m.Asset.lifecycle == "temporary")
        ).scalars().all())

    def delete_asset(self, asset_id: str) -> None:
        self.s.execute(delete(m.Asset).where(m.Asset.id == asset_id))

    def storage_used(self, owner_id: str | None = None) -> tuple[int, int]:
        q = select(func.count(), func.coalesce(func.sum(m.Asset.size), 0))
        if owner_id:
            q = q.where(m.Asset.owner_id == owner_id)
        n, total = self.s.execute(q).one()
        return int(n), int(total)

    # --- uploads ---------------------------------------------------------------------------------
    def add_upload(self, **values: Any) -> Upload:
        up = m.Upload(id=new_id(), created_at=self.now(), status="pending", **values)
        self.s.add(up)
        self.flush()
        return record(Upload, up)

    def upload(self, upload_id: str, *, owner_id: str | None = None, lock: bool = False) -> Upload | None:
        q = select(m.Upload).where(m.Upload.id == upload_id)
        if owner_id is not None:
            q = q.where(m.Upload.owner_id == owner_id)
        if lock and self.pg:
            q = q.with_for_update()
        row = self.s.execute(q).scalar_one_or_none()
        return record(Upload, row) if row is not None else None

    def upload_by_key(self, key: str) -> Upload | None:
        row = self.s.execute(select(m.Upload).where(m.Upload.key == key)).scalar_one_or_none()
        return record(Upload, row) if row is not None else None

    def update_upload(self, upload_id: str, *, status_was: str | None = None, **values: Any) -> bool:
        q = update(m.Upload).where(m.Upload.id == upload_id)
        if status_was is not None:
            q = q.where(m.Upload.status == status_was)
        res = self.s.execute(q.values(**values))
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]

    def expired_uploads(self, limit: int = 500) -> list[Upload]:
        return records(Upload, self.s.execute(
            select(m.Upload).where(m.Upload.status == "pending", m.Upload.expires_at < db_epoch()).limit(limit)
        ).scalars().all())
