"""Accounts: users, API keys and refresh tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from reelforge.adapters.db import models as m
from reelforge.adapters.db.engine import db_epoch
from reelforge.adapters.db.repositories.base import Repository, record, records
from reelforge.domain.records import ApiKey, LoginThrottle, RefreshToken, User, new_id


class AccountRepository(Repository):
    # --- users -------------------------------------------------------------------------------
    def add_user(self, *, email: str, password_hash: str, role: str, webhook_secret: str) -> User:
        now = self.now()
        user = m.User(id=new_id(), email=email, password_hash=password_hash, role=role, disabled=False,
                      credits=0, webhook_secret=webhook_secret, created_at=now, updated_at=now)
        self.s.add(user)
        self.flush()
        return record(User, user)

    def user(self, user_id: str, *, lock: bool = False) -> User | None:
        q = select(m.User).where(m.User.id == user_id)
        if lock and self.pg:
            q = q.with_for_update()
        row = self.s.execute(q).scalar_one_or_none()
        return record(User, row) if row is not None else None

    def user_by_email(self, email: str) -> User | None:
        row = self.s.execute(select(m.User).where(m.User.email == email)).scalar_one_or_none()
        return record(User, row) if row is not None else None

    def users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        return records(User, self.s.execute(
            select(m.User).order_by(m.User.created_at).limit(limit).offset(offset)).scalars().all())

    def update_user(self, user_id: str, **values: Any) -> User | None:
        row = self.s.execute(
            update(m.User).where(m.User.id == user_id).values(updated_at=self.now(), **values).returning(m.User),
            execution_options={"synchronize_session": False, "populate_existing": True},
        ).scalar_one_or_none()
        return record(User, row) if row is not None else None

    def admin_ids(self) -> list[str]:
        return list(self.s.execute(
            select(m.User.id).where(m.User.role == "admin", m.User.disabled.is_(False)).order_by(m.User.created_at)
        ).scalars().all())

    # --- api keys ------------------------------------------------------------------------------
    def add_api_key(self, *, owner_id: str, name: str, prefix: str, key_hash: str,
                    scopes: list[str] | None = None) -> ApiKey:
        key = m.ApiKey(id=new_id(), owner_id=owner_id, name=name, prefix=prefix, key_hash=key_hash,
                       created_at=self.now(), scopes=scopes)
        self.s.add(key)
        self.flush()
        return record(ApiKey, key)

    def api_key_by_prefix(self, prefix: str) -> ApiKey | None:
        row = self.s.execute(select(m.ApiKey).where(m.ApiKey.prefix == prefix)).scalar_one_or_none()
        return record(ApiKey, row) if row is not None else None

    def api_keys(self, owner_id: str) -> list[ApiKey]:
        return records(ApiKey, self.s.execute(
            select(m.ApiKey).where(m.ApiKey.owner_id == owner_id).order_by(m.ApiKey.created_at.desc())
        ).scalars().all())

    def api_key(self, key_id: str) -> ApiKey | None:
        row = self.s.get(m.ApiKey, key_id)
        return record(ApiKey, row) if row is not None else None

    def touch_api_key(self, key_id: str) -> None:
        self.s.execute(update(m.ApiKey).where(m.ApiKey.id == key_id).values(last_used_at=db_epoch()))

    def revoke_api_key(self, key_id: str) -> ApiKey | None:
        self.s.execute(update(m.ApiKey).where(m.ApiKey.id == key_id, m.ApiKey.revoked_at.is_(None))
                       .values(revoked_at=self.now()))
        row = self.s.execute(select(m.ApiKey).where(m.ApiKey.id == key_id),
                             execution_options={"populate_existing": True}).scalar_one_or_none()
        return record(ApiKey, row) if row is not None else None

    # --- refresh tokens ------------------------------------------------------------------------------
    def add_refresh(self, *, user_id: str, token_hash: str, ttl_s: float,
                    family_id: str | None = None) -> RefreshToken:
        now = self.now()
        token_id = new_id()
        tok = m.RefreshToken(id=token_id, user_id=user_id, token_hash=token_hash, created_at=now,
                             expires_at=now + ttl_s, family_id=family_id or token_id)
        self.s.add(tok)
        self.flush()
        return record(RefreshToken, tok)

    def take_refresh(self, token_hash: str) -> RefreshToken | None:
        now = self.now()
        res = self.s.execute(
            update(m.RefreshToken)
            .where(m.RefreshToken.token_hash == token_hash, m.RefreshToken.revoked_at.is_(None),
                   m.RefreshToken.expires_at > now)
            .values(revoked_at=now)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return record(RefreshToken, self.s.execute(
            select(m.RefreshToken).where(m.RefreshToken.token_hash == token_hash)).scalar_one())

    def refresh_by_hash(self, token_hash: str) -> RefreshToken | None:
        row = self.s.execute(select(m.RefreshToken).where(m.RefreshToken.token_hash == token_hash),
                             execution_options={"populate_existing": True}).scalar_one_or_none()
        return record(RefreshToken, row) if row is not None else None

    def revoke_refresh_family(self, family_id: str) -> int:
        res = self.s.execute(
            update(m.RefreshToken)
            .where(m.RefreshToken.family_id == family_id, m.RefreshToken.revoked_at.is_(None))
            .values(revoked_at=self.now()),
            execution_options={"synchronize_session": False},
        )
        return int(res.rowcount)  # type: ignore[attr-defined]

    def webhook_secrets_without_prefix(self, prefix: str, *, limit: int = 500) -> list[tuple[str, str]]:
        rows = self.s.execute(select(m.User.id, m.User.webhook_secret)
                              .where(~m.User.webhook_secret.startswith(prefix, autoescape=True))
                              .order_by(m.User.id).limit(limit)).all()
        return [(str(r[0]), str(r[1])) for r in rows]

    def set_webhook_secret(self, user_id: str, secret: str) -> None:
        self.s.execute(update(m.User).where(m.User.id == user_id).values(webhook_secret=secret),
                       execution_options={"synchronize_session": False})

    def rotate_webhook_secret(self, user_id: str, secret: str, *, keep_previous_until: float | None) -> None:
        t = m.User
        keep = keep_previous_until is not None
        self.s.execute(update(t).where(t.id == user_id).values(
            webhook_secret=secret, previous_webhook_secret=t.webhook_secret if keep else None,
            previous_webhook_secret_until=keep_previous_until), execution_options={"synchronize_session": False})
        self.s.expire_all()

    def previous_webhook_secret(self, user_id: str) -> tuple[str | None, float | None]:
        row = self.s.execute(select(m.User.previous_webhook_secret, m.User.previous_webhook_secret_until)
                             .where(m.User.id == user_id)).first()
        return (row[0], row[1]) if row is not None else (None, None)

    def revoke_user_refresh(self, user_id: str) -> int:
        res = self.s.execute(
            update(m.RefreshToken)
            .where(m.RefreshToken.user_id == user_id, m.RefreshToken.revoked_at.is_(None))
            .values(revoked_at=self.now()),
            execution_options={"synchronize_session": False},
        )
        return int(res.rowcount)  # type: ignore[attr-defined]

    def sessions(self, user_id: str) -> list[tuple[str, float, float, float]]:
        """(family id, started, last refreshed, expires) of the account's signed-in sessions: refresh-token
        families with a live token, most recently active first."""
        now = self.now()
        live = (select(m.RefreshToken.family_id, m.RefreshToken.created_at, m.RefreshToken.expires_at)
                .where(m.RefreshToken.user_id == user_id, m.RefreshToken.revoked_at.is_(None),
                       m.RefreshToken.expires_at > now).subquery())
        started = (select(m.RefreshToken.family_id, func.min(m.RefreshToken.created_at).label("started"))
                   .where(m.RefreshToken.user_id == user_id).group_by(m.RefreshToken.family_id).subquery())
        rows = self.s.execute(select(live.c.family_id, started.c.started, live.c.created_at, live.c.expires_at)
                              .join(started, started.c.family_id == live.c.family_id)
                              .order_by(live.c.created_at.desc(), live.c.family_id)).all()
        return [(str(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in rows]

    def session_live(self, user_id: str, family_id: str) -> bool:
        """Whether the account's refresh-token family still holds a live token (the session is signed in)."""
        row = self.s.execute(select(m.RefreshToken.id).where(
            m.RefreshToken.family_id == family_id, m.RefreshToken.user_id == user_id,
            m.RefreshToken.revoked_at.is_(None), m.RefreshToken.expires_at > self.now()).limit(1)).first()
        return row is not None

    # --- login throttles ------------------------------------------------------------------------------
    def lock_login_throttle(self, key: str) -> LoginThrottle:
        dialect_insert: Any = postgresql.insert if self.pg else sqlite.insert
        self.s.execute(dialect_insert(m.LoginThrottle)
                       .values(key=key, failures=0, locked_until=0.0, updated_at=self.now())
                       .on_conflict_do_nothing(index_elements=[m.LoginThrottle.key]))
        # SQLite: the write transaction holds the database lock from BEGIN; PostgreSQL: the row lock.
        q = select(m.LoginThrottle).where(m.LoginThrottle.key == key)
        if self.pg:
            q = q.with_for_update()
        row = self.s.execute(q, execution_options={"populate_existing": True}).scalar_one()
        return record(LoginThrottle, row)

    def set_login_throttle(self, key: str, *, failures: int, locked_until: float) -> None:
        self.s.execute(update(m.LoginThrottle).where(m.LoginThrottle.key == key)
                       .values(failures=failures, locked_until=locked_until, updated_at=self.now()),
                       execution_options={"synchronize_session": False})

    def clear_login_throttle(self, key: str) -> None:
        self.s.execute(delete(m.LoginThrottle).where(m.LoginThrottle.key == key),
                       execution_options={"synchronize_session": False})

    def prune_login_throttles(self, idle_before: float) -> int:
        res = self.s.execute(delete(m.LoginThrottle).where(m.LoginThrottle.updated_at < idle_before,
                                                           m.LoginThrottle.locked_until < self.now()),
                             execution_options={"synchronize_session": False})
        return int(res.rowcount or 0)  # type: ignore[attr-defined]
