"""Apply Alembic migrations programmatically (both SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config

from reelforge.adapters.db.engine import normalize_url
from reelforge.adapters.files import private_sqlite

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str, locations: Sequence[Path] = ()) -> Config:
    """The core's migrations plus each application's version folder (`locations`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    folders = [MIGRATIONS / "versions", *locations]
    # Alembic splits version_locations on the separator named here; os.pathsep never occurs inside a path.
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(str(f) for f in folders))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads", locations: Sequence[Path] | None = None) -> None:
    """Bring the schema to `revision` (every branch head by default: the core's and each application's, by
    default every installed application's); safe to run on every start (a no-op when up to date)."""
    if locations is None:
        from reelforge.applications import discover

        locations = [a.migrations for a in discover() if a.migrations is not None]
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not url.startswith("sqlite:///file:"):
        private_sqlite(Path(url.split("///", 1)[1].split("?", 1)[0]))
    command.upgrade(alembic_config(url, locations), revision)
