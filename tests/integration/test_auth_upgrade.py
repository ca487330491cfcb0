"""Upgrading an installation from before refresh-token families, login throttles and sealed secrets:
existing rows carry over (each old refresh token a family of its own; plain secrets sealed by migrate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from reelforge.adapters.db.engine import normalize_url
from reelforge.adapters.db.migrate import upgrade
from tests.conftest import make_settings
from tests.fixtures.databases import PgServer, require_pg
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    require_pg(pg_server)
    return pg_server.create_database()


def test_upgrade_keeps_refresh_tokens_and_seals_secrets(empty_url: str, tmp_path: Path) -> None:
    from reelforge.container import Container

    upgrade(empty_url, revision="0003", locations=[])
    engine = create_engine(normalize_url(empty_url))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, email, password_hash, role, disabled, credits, webhook_secret, "
                          "created_at, updated_at) VALUES ('u1', 'old@example.com', 'x', 'user', false, 0, "
                          "'whsec_plain-account', 0, 0)"))
        for tid in ("t1", "t2"):
            conn.execute(text("INSERT INTO refresh_tokens (id, user_id, token_hash, created_at, expires_at) "
                              "VALUES (:id, 'u1', :h, 0, 1e12)"), {"id": tid, "h": "hash-" + tid})
        conn.execute(text("INSERT INTO webhooks (id, owner_id, url, secret, event_types, description, active, "
                          "created_at) VALUES ('h1', 'u1', 'https://example.invalid/x', 'whsec_plain-hook', '[]', "
                          "'', true, 0)"))
    engine.dispose()

    c: Any = Container(make_settings(tmp_path, empty_url))
    try:
        c.migrate()
        with c.db.engine.connect() as conn:
            families = dict(conn.execute(text("SELECT id, family_id FROM refresh_tokens")).all())
            assert families == {"t1": "t1", "t2": "t2"}
            assert conn.execute(text("SELECT count(*) FROM login_throttles")).scalar_one() == 0
            hook_secret = conn.execute(text("SELECT secret FROM webhooks")).scalar_one()
            account_secret = conn.execute(text("SELECT webhook_secret FROM users")).scalar_one()
        assert hook_secret.startswith("rfenc1:") and account_secret.startswith("rfenc1:")
        assert c.events.reveal(hook_secret) == "whsec_plain-hook"
        assert c.events.reveal(account_secret) == "whsec_plain-account"
        # An old token rotates into its family; a replay of it then revokes the new one.
        with c.store.tx() as tx:
            tok = tx.accounts.take_refresh("hash-t1")
            assert tok is not None and tok.family_id == "t1"
            new = tx.accounts.add_refresh(user_id="u1", token_hash="hash-t3", ttl_s=60, family_id=tok.family_id)
        with c.store.tx() as tx:
            assert tx.accounts.revoke_refresh_family("t1") == 1
            assert tx.accounts.refresh_by_hash(new.token_hash).revoked_at is not None  # type: ignore[union-attr]
            assert tx.accounts.refresh_by_hash("hash-t2").revoked_at is None  # type: ignore[union-attr]
    finally:
        c.close()
