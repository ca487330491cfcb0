"""The worker-side source cache: hits, checksum verification, LRU eviction, and several users at once."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from reelforge import errors
from reelforge.runtime.cache import SourceCache, cache_for


def _blob(tmp_path: Path, name: str, size: int, seed: int) -> tuple[Path, str]:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


class Fetcher:
    """Copies a file as the storage adapters' download_to would; counts calls."""

    def __init__(self, src: Path, delay: float = 0.0) -> None:
        self.src = src
        self.calls = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, dest: Path) -> None:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        dest.write_bytes(self.src.read_bytes())


def test_hit_after_miss(tmp_path: Path) -> None:
    src, sha = _blob(tmp_path, "a.bin", 10_000, 1)
    cache = SourceCache(tmp_path / "cache", 1_000_000)
    fetch = Fetcher(src)
    with cache.use(sha, 10_000, fetch) as u:
        assert not u.hit and u.path.read_bytes() == src.read_bytes()
    with cache.use(sha, 10_000, fetch) as u:
        assert u.hit
    assert fetch.calls == 1
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_corrupted_entry_is_detected_and_fetched_again(tmp_path: Path) -> None:
    src, sha = _blob(tmp_path, "a.bin", 4096, 2)
    cache = SourceCache(tmp_path / "cache", 1_000_000)
    fetch = Fetcher(src)
    with cache.use(sha, 4096, fetch) as u:
        path = u.path
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    with cache.use(sha, 4096, fetch) as u:
        assert not u.hit and u.corrupt
        assert hashlib.sha256(u.path.read_bytes()).hexdigest() == sha
    assert fetch.calls == 2 and cache.stats.corrupt == 1


def test_download_that_does_not_match_the_record_is_refused(tmp_path: Path) -> None:
    src, _ = _blob(tmp_path, "a.bin", 4096, 3)
    cache = SourceCache(tmp_path / "cache", 1_000_000)
    with pytest.raises(errors.ChecksumMismatch), cache.use("0" * 64, None, Fetcher(src)):
        pass
    assert cache.entries() == []
    assert not list((tmp_path / "cache").glob("*/.*.part"))


def test_lru_eviction_at_the_size_limit(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", 25_000)
    blobs = [_blob(tmp_path, f"{i}.bin", 10_000, 10 + i) for i in range(3)]
    for src, sha in blobs[:2]:
        with cache.use(sha, 10_000, Fetcher(src)):
            pass
        time.sleep(0.02)
    # use the first again: the second is now the least recently used
    with cache.use(blobs[0][1], 10_000, Fetcher(blobs[0][0])) as u:
        assert u.hit
    time.sleep(0.02)
    with cache.use(blobs[2][1], 10_000, Fetcher(blobs[2][0])):
        pass
    names = {p.name for p, _, _ in cache.entries()}
    assert names == {blobs[0][1], blobs[2][1]}
    assert sum(size for _, size, _ in cache.entries()) <= 25_000 and cache.stats.evictions == 1


def test_entries_in_use_are_not_evicted(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", 5_000)  # smaller than one entry
    a, sha_a = _blob(tmp_path, "a.bin", 10_000, 20)
    b, sha_b = _blob(tmp_path, "b.bin", 10_000, 21)
    with cache.use(sha_a, 10_000, Fetcher(a)) as held:
        with cache.use(sha_b, 10_000, Fetcher(b)):
            assert held.path.exists()  # in use by us: skipped by the evictor
        assert held.path.read_bytes() == a.read_bytes()


def test_threads_download_once(tmp_path: Path) -> None:
    src, sha = _blob(tmp_path, "a.bin", 200_000, 30)
    cache = SourceCache(tmp_path / "cache", 10_000_000)
    fetch = Fetcher(src, delay=0.2)
    results: list[bool] = []

    def use() -> None:
        with cache.use(sha, 200_000, fetch) as u:
            results.append(u.hit)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fetch.calls == 1 and sorted(results) == [False, True, True, True]


def _proc_use(root: str, src: str, sha: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    cache = SourceCache(Path(root), 10_000_000)
    fetch = Fetcher(Path(src), delay=0.3)
    with cache.use(sha, None, fetch) as u:
        out.put((os.getpid(), u.hit, fetch.calls))


def test_processes_download_once(tmp_path: Path) -> None:
    src, sha = _blob(tmp_path, "a.bin", 100_000, 40)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_proc_use, args=(str(tmp_path / "cache"), str(src), sha, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    got = [q.get(timeout=5) for _ in procs]
    assert sorted(hit for _, hit, _ in got) == [False, True, True]


def test_cache_for_keeps_one_instance_per_holder(tmp_path: Path) -> None:
    class Holder:
        pass

    h = Holder()
    a = cache_for(h, tmp_path / "c", 100)
    assert cache_for(h, tmp_path / "c", 100) is a
    assert cache_for(Holder(), tmp_path / "c", 100) is not a


def test_readers_of_a_present_entry_do_not_wait_for_each_other(tmp_path: Path) -> None:
    """Every chunk of a video holds the source while it works: a second reader must get it while the first
    still holds it (an exclusive check lock would make chunks of one video run one after another)."""
    src, sha = _blob(tmp_path, "a.bin", 8192, 7)
    cache = SourceCache(tmp_path / "cache", 1_000_000)
    fetch = Fetcher(src)
    with cache.use(sha, 8192, fetch):
        pass  # present and verified from here on
    first_in, second_in, release = threading.Event(), threading.Event(), threading.Event()

    def reader(entered: threading.Event) -> None:
        with cache.use(sha, 8192, fetch) as u:
            assert u.hit
            entered.set()
            release.wait(10)

    t1 = threading.Thread(target=reader, args=(first_in,))
    t1.start()
    assert first_in.wait(10)
    t2 = threading.Thread(target=reader, args=(second_in,))
    t2.start()
    try:
        assert second_in.wait(5), "the second reader waited for the first to finish"
    finally:
        release.set()
        t1.join(10)
        t2.join(10)
    assert fetch.calls == 1
