"""Rate limiters: in process memory (a sliding log), or shared by every API process through a `WindowCounter`.

Both answer `take(key) -> Verdict` (and the older `hit(key) -> seconds to wait | None`). The shared one keeps
the hot path free of I/O: a process takes a share of a budget (1/lease_divisor of it) from the shared counter
at once and spends it locally, and once the shared counter says a window is spent it refuses until the window
ends without asking again. `try_local` is that I/O-free part: it answers when it can and returns None when the
shared counter must be asked (`take`, on a thread from async code).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass

from reelforge.ports.limits import WindowCounter

log = logging.getLogger("reelforge.limits")

MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's answer: allowed or not, the budget, what is left of it and seconds until it frees up."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    window_s: int

    @property
    def retry_after(self) -> int | None:
        return None if self.allowed else max(1, self.reset_s)

    def headers(self) -> dict[str, str]:
        """RateLimit-* answer headers (draft-ietf-httpapi-ratelimit-headers), plus Retry-After when refused."""
        out = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(max(0, self.remaining)),
               "RateLimit-Reset": str(max(0, self.reset_s)), "RateLimit-Policy": f"{self.limit};w={self.window_s}"}
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


class RateLimiter:
    """Sliding-window log per key, in process memory (one API process per limiter)."""

    shared = False

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every hit (a new window for every key)."""
        with self._lock:
            self._hits.clear()

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Record a hit; returns None when allowed, else seconds to wait."""
        return self.take(key, now).retry_after

    def try_local(self, key: str, now: float | None = None) -> Verdict:
        return self.take(key, now)

    def take(self, key: str, now: float | None = None) -> Verdict:
        """Record a hit when the budget allows it."""
        now = time.monotonic() if now is None else now
        window = int(self.window_s)
        with self._lock:
            q = self._hits.setdefault(key, collections.deque())
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                wait = max(1, math.ceil(q[0] + self.window_s - now)) if q else window
                return Verdict(False, self.limit, 0, wait, window)
            q.append(now)
            if len(self._hits) > MAX_KEYS:  # keep memory bounded under a flood of distinct keys
                for k in [k for k, v in self._hits.items() if not v][:MAX_KEYS // 2]:
                    del self._hits[k]
            return Verdict(True, self.limit, self.limit - len(q), max(0, math.ceil(q[0] + self.window_s - now)),
                           window)


class _Share:
    """What this process holds of one key's window: unspent hits, and what the shared counter had left."""

    __slots__ = ("exhausted", "shared_left", "tokens", "window")

    def __init__(self, window: int, tokens: int, shared_left: int, exhausted: bool) -> None:
        self.window = window
        self.tokens = tokens
        self.shared_left = shared_left
        self.exhausted = exhausted


class SharedRateLimiter:
    """Fixed windows of `window_s` seconds (aligned to the epoch, so every process agrees) counted in a shared
    `WindowCounter`. Never allows more than `limit` per window across all processes; a process's unspent share
    lapses with the window (docs/decisions.md, "Rate limits shared across processes")."""

    shared = True

    def __init__(self, counter: WindowCounter, limit: int, window_s: float, *, name: str, lease_divisor: int = 50,
                 clock: object = None) -> None:
        self.counter = counter
        self.limit = int(limit)
        self.window_s = max(1, int(window_s))
        self.name = name
        self.lease = max(1, self.limit // max(1, lease_divisor))
        self._clock = clock if callable(clock) else time.time
        self._shares: dict[str, _Share] = {}
        self._lock = threading.Lock()
        self.shared_calls = 0  # how often the shared counter was asked (benchmarks, tests)

    def reset(self) -> None:
        """Forget every count of this limiter: this process's shares and the shared counters (every process's)."""
        with self._lock:
            self._shares.clear()
        self.counter.clear(f"{self.name}:")

    def hit(self, key: str, now: float | None = None) -> int | None:
        """Record a hit; returns None when allowed, else seconds to wait."""
        return self.take(key, now).retry_after

    def _window(self, now: float) -> int:
        return int(now // self.window_s) * self.window_s

    def try_local(self, key: str, now: float | None = None) -> Verdict | None:
        """The answer from this process's share alone (no I/O), or None when the shared counter must be asked."""
        now = self._clock() if now is None else now  # type: ignore[operator]
        w = self._window(now)
        reset = max(1, math.ceil(w + self.window_s - now))
        with self._lock:
            share = self._shares.get(key)
            if share is None or share.window != w:
                return None
            if share.tokens > 0:
                share.tokens -= 1
                return Verdict(True, self.limit, share.tokens + share.shared_left, reset, self.window_s)
            if share.exhausted:
                return Verdict(False, self.limit, 0, reset, self.window_s)
        return None

    def take(self, key: str, now: float | None = None) -> Verdict:
        """Record a hit when the budget allows it, asking the shared counter for a new share when needed."""
        now = self._clock() if now is None else now  # type: ignore[operator]
        local = self.try_local(key, now)
        if local is not None:
            return local
        w = self._window(now)
        reset = max(1, math.ceil(w + self.window_s - now))
        n = self.lease
        try:
            total = self.counter.add(f"{self.name}:{key}", w, n, float(w + self.window_s))
        except Exception:
            # A limiter whose store is down must not take the API down with it: allow, and say so in the log.
            log.warning("rate limit store unavailable; request allowed", exc_info=True)
            return Verdict(True, self.limit, self.limit, reset, self.window_s)
        self.shared_calls += 1
        granted = max(0, min(n, self.limit - (total - n)))
        shared_left = max(0, self.limit - total)
        with self._lock:
            share = self._shares.get(key)
            if share is None or share.window != w:
                if len(self._shares) >= MAX_KEYS:
                    for k in [k for k, s in self._shares.items() if s.window != w][:MAX_KEYS // 2]:
                        del self._shares[k]
                    if len(self._shares) >= MAX_KEYS:
                        self._shares.clear()
                share = self._shares[key] = _Share(w, 0, shared_left, False)
            share.tokens += granted
            share.shared_left = min(share.shared_left, shared_left)
            share.exhausted = total >= self.limit
            if share.tokens > 0:
                share.tokens -= 1
                return Verdict(True, self.limit, share.tokens + share.shared_left, reset, self.window_s)
            share.exhausted = True
        return Verdict(False, self.limit, 0, reset, self.window_s)
