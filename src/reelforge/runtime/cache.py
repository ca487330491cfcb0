"""Worker-side disk cache of source objects (video sources read by several chunk steps).

Sources live only in object storage; a worker that processes several chunks of one video (or a second
job on the same video) should not download it again. Entries are keyed by the object's sha256 as the
asset record states it, so the same bytes uploaded twice share an entry, and every hit is verified by
rehashing the file: a corrupted entry is detected, dropped and downloaded again.

Safe with several threads and several worker processes on one cache directory:

- one lock file per entry (``fcntl.flock``): a shared lock to check and use a present entry (so all
  chunks of a video read it at once), an exclusive lock only to download or replace it;
- downloads go to a temporary file in the cache directory and are renamed into place;
- eviction (least recently used first, by the entry's access time, which every use sets) runs after
  each download, under a directory-wide lock, and skips entries that anyone holds, so a file is never
  removed under a reader.

The size limit is soft by at most the entries in use at that moment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reelforge import errors

log = logging.getLogger("reelforge.cache")

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    evictions: int = 0


@dataclass(frozen=True)
class CacheUse:
    """What one `use()` found: the local path and whether it was already there (a hit)."""

    path: Path
    hit: bool
    corrupt: bool = False


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _flocked(path: Path, mode: int) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


class SourceCache:
    """A size-limited, least-recently-used cache of verified files, keyed by sha256."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max(0, int(max_bytes))
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "locks").mkdir(exist_ok=True)
        self.stats = CacheStats()
        self._stats_lock = threading.Lock()
        self._checked: dict[str, tuple[int, int, int]] = {}

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def _lock_path(self, sha256: str) -> Path:
        return self.root / "locks" / f"{sha256}.lock"

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, n in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)

    @contextlib.contextmanager
    def use(self, sha256: str, size: int | None, fetch: Callable[[Path], object]) -> Iterator[CacheUse]:
        """Yield a local, verified copy of the object whose sha256 is ``sha256``.

        ``fetch(path)`` must write the object to ``path`` (the storage adapters' ``download_to``). The
        file stays in place (shared lock) until the block ends.
        """
        sha256 = sha256.lower()
        if not _SHA_RE.match(sha256):
            raise errors.ValidationFailed("cache keys are sha256 hex digests", code="invalid_checksum")
        target = self.path_for(sha256)
        lock_path = self._lock_path(sha256)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # The common case, a verified entry, needs only a shared lock: every chunk of a video (threads of
            # one worker, other workers) reads the same source at once. The exclusive lock is taken only to
            # download or replace the entry, and waits until no one is reading it.
            fcntl.flock(fd, fcntl.LOCK_SH)
            hit, corrupt = self._usable(target, sha256, size), False
            if not hit:
                fcntl.flock(fd, fcntl.LOCK_UN)
                fcntl.flock(fd, fcntl.LOCK_EX)
                hit = self._usable(target, sha256, size)  # someone may have fetched it meanwhile
                if not hit:
                    if target.exists():
                        corrupt = True
                        log.warning("cache entry %s does not match its sha256; downloading it again", sha256[:12])
                        target.unlink(missing_ok=True)
                    self._download(sha256, size, target, fetch)
            # Most recently used: the access time says so (the mtime stays, it stamps the verification).
            os.utime(target, ns=(time.time_ns(), target.stat().st_mtime_ns))
            self._count(hits=int(hit), misses=int(not hit), corrupt=int(corrupt))
            if not hit:
                # Downgrade: others may use the entry too; the evictor (LOCK_EX | LOCK_NB) skips it.
                fcntl.flock(fd, fcntl.LOCK_SH)
                self.evict(keep=sha256)
            yield CacheUse(path=target, hit=hit, corrupt=corrupt)
        finally:
            os.close(fd)

    def _usable(self, target: Path, sha256: str, size: int | None) -> bool:
        try:
            st = target.stat()
        except FileNotFoundError:
            return False
        return (size is None or st.st_size == size) and self._verified(target, sha256)

    def _verified(self, path: Path, sha256: str) -> bool:
        """Rehash the entry, unless this process already did since the file last changed (same inode, size and
        mtime): a source read by many chunk steps is hashed once per process, and any rewrite is caught."""
        st = path.stat()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._stats_lock:
            if self._checked.get(sha256) == stamp:
                return True
        ok = file_sha256(path) == sha256
        if ok:
            with self._stats_lock:
                self._checked[sha256] = stamp
        return ok

    def _download(self, sha256: str, size: int | None, target: Path, fetch: Callable[[Path], object]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{sha256[:16]}.{uuid.uuid4().hex}.part"
        try:
            fetch(tmp)
            got = file_sha256(tmp)
            if got != sha256 or (size is not None and tmp.stat().st_size != size):
                raise errors.ChecksumMismatch("The stored object does not match its asset record",
                                              expected=sha256, received=got)
            os.replace(tmp, target)
            st = target.stat()
            with self._stats_lock:
                self._checked[sha256] = (st.st_ino, st.st_size, st.st_mtime_ns)
        finally:
            tmp.unlink(missing_ok=True)

    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, last use) of every complete entry."""
        out: list[tuple[Path, int, float]] = []
        for sub in self.root.iterdir():
            if not sub.is_dir() or sub.name == "locks":
                continue
            for f in sub.iterdir():
                if f.name.startswith("."):
                    continue
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                out.append((f, st.st_size, st.st_atime))
        return out

    def evict(self, keep: str | None = None) -> int:
        """Remove least recently used entries until the cache fits; entries in use are skipped."""
        removed = 0
        with _flocked(self.root / "locks" / ".evict", fcntl.LOCK_EX):
            entries = sorted(self.entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            for path, size, _ in entries:
                if total <= self.max_bytes:
                    break
                if path.name == keep:
                    continue
                fd = os.open(self._lock_path(path.name), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # someone is using or downloading it
                    path.unlink(missing_ok=True)
                finally:
                    os.close(fd)
                total -= size
                removed += 1
        self._stale_temps()
        if removed:
            self._count(evictions=removed)
            log.info("cache evicted %d entr%s", removed, "y" if removed == 1 else "ies")
        return removed

    def _stale_temps(self, older_than_s: float = 3600.0) -> None:
        """Partial downloads of a crashed process: removed once they are clearly abandoned."""
        cutoff = time.time() - older_than_s
        for sub in self.root.iterdir():
            if not sub.is_dir() or sub.name == "locks":
                continue
            for f in sub.glob(".*.part"):
                with contextlib.suppress(FileNotFoundError):
                    if f.stat().st_mtime < cutoff:
                        f.unlink()


_caches: dict[tuple[str, int], SourceCache] = {}
_caches_lock = threading.Lock()


def cache_for(holder: object, root: Path, max_bytes: int) -> SourceCache:
    """The cache a worker's steps share, created on first use and kept on ``holder`` (the worker's
    step services), so that one process has one instance (and one set of counters) per directory."""
    key = (str(Path(root).resolve()), int(max_bytes))
    with _caches_lock:
        caches: dict[tuple[str, int], SourceCache] | None = getattr(holder, "_source_caches", None)
        if caches is None:
            caches = {}
            try:
                holder._source_caches = caches  # type: ignore[attr-defined]
            except AttributeError:
                caches = _caches  # a holder without attributes (None): one per process
        cache = caches.get(key)
        if cache is None:
            cache = caches[key] = SourceCache(Path(root), max_bytes)
        return cache
