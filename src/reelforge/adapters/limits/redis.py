"""Rate-limit counters in Redis: INCRBY and an expiry in one server-side script (atomic, one round trip)."""

from __future__ import annotations

from typing import Any

_ADD = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total == tonumber(ARGV[1]) then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
return total
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class RedisWindowCounter:
    """One Redis key per limit key and window (`reelforge:rl:<key>:<window>`), gone when the window ends."""

    def __init__(self, url: str, *, prefix: str = "reelforge:rl:", client: Any = None) -> None:
        if client is None:
            import redis  # the `redis` extra; imported only when this backend is configured

            client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                          health_check_interval=30)
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_ADD)

    def add(self, key: str, window_start: int, n: int, expires_at: float) -> int:
        return int(self._script(keys=[f"{self.prefix}{key}:{int(window_start)}"],
                                args=[int(n), int(expires_at) + 1]))

    def clear(self, prefix: str) -> None:
        keys = list(self.client.scan_iter(match=_glob_escape(f"{self.prefix}{prefix}") + "*", count=1000))
        for i in range(0, len(keys), 500):
            self.client.delete(*keys[i:i + 500])

    def close(self) -> None:
        self.client.close()
