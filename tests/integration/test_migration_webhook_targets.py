"""Migration 0007 on a database that already holds deliveries: pending ones get their target host."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from reelforge.adapters.db.migrate import upgrade


def test_pending_deliveries_get_their_target_host(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0003")
    upgrade(url, "mobs@head")
    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO deliveries (id, event_id, owner_id, target, url, status, attempts, next_attempt_at, "
            "created_at) VALUES ('d1', 'e1', 'o1', 'webhook:a', 'https://Hooks.Example.com./in', 'pending', 0, 0, 0),"
            " ('d2', 'e2', 'o1', 'webhook:b', 'http://[::1]:8080/in', 'pending', 2, 0, 0),"
            " ('d3', 'e3', 'o1', 'webhook:c', 'http://example.com/in', 'delivered', 1, 0, 0)")
    upgrade(url)
    with engine.begin() as c:
        hosts = dict(c.exec_driver_sql("SELECT id, host FROM deliveries").all())
        versions = {v for (v,) in c.exec_driver_sql("SELECT version_num FROM alembic_version").all()}
        assert c.exec_driver_sql("SELECT count(*) FROM webhook_circuits").scalar_one() == 0
    engine.dispose()
    assert hosts == {"d1": "hooks.example.com:443", "d2": "[::1]:8080", "d3": None}
    # the core head, the mobs branch, and every other installed application's branch head
    assert {"0004", "0012"} <= versions == _heads(url)


def _heads(url: str) -> set[str]:
    from alembic.script import ScriptDirectory

    from reelforge.adapters.db.migrate import alembic_config
    from reelforge.applications import discover

    cfg = alembic_config(url, [a.migrations for a in discover() if a.migrations is not None])
    return set(ScriptDirectory.from_config(cfg).get_heads())
