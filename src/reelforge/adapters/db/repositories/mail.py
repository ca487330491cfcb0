"""Mail: the mail queue, single-use link tokens, and each account's verification and mail preferences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from reelforge.adapters.db import models as m
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.mail import LinkToken, Mail, MailPrefs
from reelforge.domain.records import new_id


class MailRepository(Repository):
    def _insert(self) -> Any:
        return postgresql.insert if self.pg else sqlite.insert

    # --- the queue ---------------------------------------------------------------------------------
    def add_mail(self, *, kind: str, to_addr: str, subject: str, body: str, user_id: str | None,
                 dedupe_key: str | None, status: str = "pending") -> bool:
        now = self.now()
        stmt = self._insert()(m.Mail).values(
            id=new_id(), kind=kind, user_id=user_id, to_addr=to_addr, subject=subject[:300], body=body,
            dedupe_key=dedupe_key, status=status, attempts=0, next_attempt_at=now, created_at=now)
        if dedupe_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=[m.Mail.dedupe_key])
        res = self.s.execute(stmt)
        return bool(res.rowcount)  # type: ignore[attr-defined]

    def mail(self, mail_id: str) -> Mail | None:
        row = self.s.execute(select(m.Mail).where(m.Mail.id == mail_id),
                             execution_options={"populate_existing": True}).scalar_one_or_none()
        return record(Mail, row) if row is not None else None

    def mails(self, *, user_id: str | None = None, to_addr: str | None = None, kind: str | None = None,
              limit: int = 100) -> list[Mail]:
        q = select(m.Mail)
        if user_id is not None:
            q = q.where(m.Mail.user_id == user_id)
        if to_addr is not None:
            q = q.where(m.Mail.to_addr == to_addr)
        if kind is not None:
            q = q.where(m.Mail.kind == kind)
        rows = self.s.execute(q.order_by(m.Mail.created_at.desc(), m.Mail.id).limit(limit),
                              execution_options={"populate_existing": True}).scalars().all()
        return records(Mail, rows)

    def claim_mails(self, limit: int, hold_s: float) -> list[Mail]:
        now = self.now()
        q = (select(m.Mail.id).where(m.Mail.status == "pending", m.Mail.next_attempt_at <= now)
             .order_by(m.Mail.next_attempt_at, m.Mail.id).limit(limit))
        if self.pg:
            q = q.with_for_update(skip_locked=True)  # another worker's claim in progress is skipped, not awaited
        ids = list(self.s.execute(q).scalars().all())
        if not ids:
            return []
        self.s.execute(update(m.Mail).where(m.Mail.id.in_(ids)).values(next_attempt_at=now + hold_s),
                       execution_options={"synchronize_session": False})
        rows = self.s.execute(select(m.Mail).where(m.Mail.id.in_(ids)).order_by(m.Mail.created_at, m.Mail.id),
                              execution_options={"populate_existing": True}).scalars().all()
        return records(Mail, rows)

    def update_mail(self, mail_id: str, **values: object) -> None:
        self.s.execute(update(m.Mail).where(m.Mail.id == mail_id).values(**values),
                       execution_options={"synchronize_session": False})

    # --- link tokens -------------------------------------------------------------------------------
    def add_token(self, *, user_id: str, purpose: str, token_hash: str, email: str, ttl_s: float) -> LinkToken:
        now = self.now()
        row = m.LinkToken(id=new_id(), user_id=user_id, purpose=purpose, token_hash=token_hash, email=email,
                          created_at=now, expires_at=now + ttl_s, used_at=None)
        self.s.add(row)
        self.flush()
        return record(LinkToken, row)

    def token_by_hash(self, token_hash: str, *, lock: bool = False) -> LinkToken | None:
        q = select(m.LinkToken).where(m.LinkToken.token_hash == token_hash)
        if lock and self.pg:
            q = q.with_for_update()
        row = self.s.execute(q, execution_options={"populate_existing": True}).scalar_one_or_none()
        return record(LinkToken, row) if row is not None else None

    def use_tokens(self, user_id: str, purpose: str) -> int:
        res = self.s.execute(update(m.LinkToken)
                             .where(m.LinkToken.user_id == user_id, m.LinkToken.purpose == purpose,
                                    m.LinkToken.used_at.is_(None))
                             .values(used_at=self.now()), execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def last_token_at(self, user_id: str, purpose: str) -> float | None:
        value = self.s.execute(select(func.max(m.LinkToken.created_at))
                               .where(m.LinkToken.user_id == user_id, m.LinkToken.purpose == purpose)).scalar()
        return float(value) if value is not None else None

    def prune_tokens(self, before: float) -> int:
        res = self.s.execute(delete(m.LinkToken).where(m.LinkToken.expires_at < before),
                             execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]

    # --- preferences and verification ----------------------------------------------------------------
    def prefs(self, user_id: str) -> MailPrefs | None:
        row = self.s.execute(select(m.MailPrefs).where(m.MailPrefs.user_id == user_id),
                             execution_options={"populate_existing": True}).scalar_one_or_none()
        return record(MailPrefs, row) if row is not None else None

    def set_prefs(self, user_id: str, **values: object) -> MailPrefs:
        now = self.now()
        defaults = {"job_finished": False, "credits_low": True, "credits_low_armed": True}
        stmt = self._insert()(m.MailPrefs).values(user_id=user_id, updated_at=now, **{**defaults, **values})
        stmt = stmt.on_conflict_do_update(index_elements=[m.MailPrefs.user_id],
                                          set_={**values, "updated_at": now})
        self.s.execute(stmt)
        prefs = self.prefs(user_id)
        assert prefs is not None
        return prefs

    def opted_in_job_mail(self, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        rows = self.s.execute(select(m.User.id, m.User.email).join(m.MailPrefs, m.MailPrefs.user_id == m.User.id)
                              .where(m.User.id.in_(list(set(user_ids))), m.MailPrefs.job_finished.is_(True),
                                     m.User.disabled.is_(False))).all()
        return {str(r[0]): str(r[1]) for r in rows}

    def credits_low_due(self, threshold: int, limit: int = 500) -> list[tuple[str, str, int]]:
        armed = or_(m.MailPrefs.user_id.is_(None),
                    and_(m.MailPrefs.credits_low.is_(True), m.MailPrefs.credits_low_armed.is_(True)))
        rows = self.s.execute(select(m.User.id, m.User.email, m.User.credits)
                              .outerjoin(m.MailPrefs, m.MailPrefs.user_id == m.User.id)
                              .where(m.User.credits < threshold, m.User.disabled.is_(False), armed)
                              .order_by(m.User.id).limit(limit)).all()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def rearm_credits_low(self, threshold: int) -> int:
        above = select(m.User.id).where(m.User.credits >= threshold)
        res = self.s.execute(update(m.MailPrefs)
                             .where(m.MailPrefs.credits_low_armed.is_(False), m.MailPrefs.user_id.in_(above))
                             .values(credits_low_armed=True, updated_at=self.now()),
                             execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]
