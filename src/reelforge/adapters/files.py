"""Owner-only modes for what the platform keeps on disk: the data directory, the object store, the SQLite
database with its WAL and shared-memory files. Set when they are made, and tightened on every start for an
installation made before (whatever the umask)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("reelforge.files")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite makes these beside the database with the database file's own mode; older ones are tightened here.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> None:
    """chmod `path` to `mode` when group or others have any access and it is ours to change."""
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot make %s private: %s", path, exc)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents, owner-only too) or tighten it to 0700. Existing parents are left
    as they are: they may be shared (/srv, a home directory)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    _tighten(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> None:
    """Create `path` empty and owner-only when missing (an empty file is a valid new SQLite database), or
    tighten it to 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    _tighten(path, PRIVATE_FILE)


def private_sqlite(path: str | Path) -> None:
    """The SQLite database at `path` and its side files, owner-only; its directory made 0700 when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        _tighten(Path(f"{path}{suffix}"), PRIVATE_FILE)
