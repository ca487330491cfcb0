"""Scratch space of running steps on the worker's disk, and the sweep of what crashed steps left behind.

A step that needs local files (chunks being encoded, downloads being joined) takes a folder with
:func:`job_scratch` (or ``ctx.scratch(label)``): ``<data_dir>/tmp/<label>.<job id>.<attempt>.<random>``, removed
when the block ends. A worker killed inside the block leaves it (with, say, a half-written
``.chunk-00007.mp4.part``); the next attempt of the job takes a folder of its own. :func:`sweep_scratch`, run by
every worker's maintenance on its own disk, removes such leftovers once nothing in them has changed for the
grace period and they do not belong to an attempt that is running now, as well as partial downloads
(``.*.part``) under ``<data_dir>/cache``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Set
from pathlib import Path
from typing import Any

log = logging.getLogger("reelforge.scratch")


def scratch_root(settings: Any) -> Path:
    return Path(settings.data_dir) / "tmp"


@contextlib.contextmanager
def job_scratch(settings: Any, job_id: str, attempt: int, label: str) -> Iterator[Path]:
    """A private folder for one attempt of one job's step, removed (with everything in it) when the block ends."""
    if not label or "." in label or "/" in label:
        raise ValueError(f"a scratch label is a plain word, not {label!r}")
    root = scratch_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=scratch_prefix(job_id, attempt, label)) as tmp:
        yield Path(tmp)


def scratch_prefix(job_id: str, attempt: int, label: str) -> str:
    """The start of the name of a scratch folder (a random part follows)."""
    return f"{label}.{job_id}.{int(attempt)}."


def owner_of(name: str) -> tuple[str, int] | None:
    """(job id, attempt) a scratch folder belongs to, from its name; None for anything else."""
    parts = name.split(".")
    if len(parts) != 4 or not parts[1] or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def _newest_mtime(path: Path) -> float:
    """The latest modification under `path` (itself included): what was still being written."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return time.time()
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def sweep_scratch(settings: Any, running: Set[tuple[str, int]], grace_s: float, *,
                  now: float | None = None) -> int:
    """Remove scratch folders and files untouched for `grace_s` that no running attempt owns, and partial
    downloads (``.*.part``) under the cache folder as old; returns how many entries were removed."""
    now = time.time() if now is None else now
    cutoff = now - grace_s
    removed = 0
    root = scratch_root(settings)
    if root.is_dir():
        for entry in root.iterdir():
            owner = owner_of(entry.name)
            if owner is not None and owner in running:
                continue
            if _newest_mtime(entry) > cutoff:
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                log.warning("could not remove the stale scratch entry %s", entry, exc_info=True)
                continue
            removed += 1
    cache = Path(settings.data_dir) / "cache"
    if cache.is_dir():
        for part in cache.rglob(".*.part"):
            with contextlib.suppress(FileNotFoundError):
                if part.is_file() and part.stat().st_mtime <= cutoff:
                    part.unlink()
                    removed += 1
    if removed:
        log.info("removed %d stale scratch entr%s", removed, "y" if removed == 1 else "ies")
    return removed
