"""What the platform keeps on disk is its owner's alone: data and object directories 0700, the SQLite database
and its WAL and shared-memory files 0600, from the first start and after a start on an older installation."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022), under which files come out world-readable unless made otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def start(tmp_path: Path) -> Any:
    """A container with the default SQLite database and local object store under a data directory, migrated,
    with a write done (so the WAL and shared-memory files exist)."""
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, "", database={"url": ""}, storage={"backend": "local"}))
    c.migrate()
    c.auth.register(f"{uuid.uuid4().hex}@example.com", "correct horse battery")
    _ = c.objects
    return c


def check_private(data: Path) -> None:
    db = data / "reelforge.db"
    assert mode(data) == 0o700
    assert mode(data / "objects") == 0o700
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    assert all(f.exists() for f in files), os.listdir(data)
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


@pytest.mark.usefixtures("open_umask")
def test_a_new_installation_is_owner_only(tmp_path: Path) -> None:
    c = start(tmp_path)
    try:
        assert c.settings.database_url.endswith(str(tmp_path / "var" / "reelforge.db"))
        check_private(tmp_path / "var")
    finally:
        c.close()


@pytest.mark.usefixtures("open_umask")
def test_an_older_installation_is_tightened_on_start(tmp_path: Path) -> None:
    data = tmp_path / "var"
    c = start(tmp_path)
    c.close()
    # As an older version left them (the WAL files kept by a process that is still running elsewhere).
    db = data / "reelforge.db"
    for f in [db, Path(f"{db}-wal"), Path(f"{db}-shm")]:
        f.touch()
        os.chmod(f, 0o644)
    os.chmod(data, 0o755)
    os.chmod(data / "objects", 0o755)

    c = start(tmp_path)
    try:
        check_private(data)
    finally:
        c.close()


def test_migrate_creates_the_database_owner_only(tmp_path: Path, open_umask: None) -> None:
    from reelforge.adapters.db.migrate import upgrade

    target = tmp_path / "fresh" / "nested" / "reelforge.db"
    upgrade(f"sqlite:///{target}")
    assert mode(target) == 0o600 and mode(target.parent) == 0o700
