"""Container health checks (the images' HEALTHCHECK and the ECS task's): exit 0 when healthy, 1 when not.

`healthcheck.py api`: the API answers `GET /healthz` on its port (REELFORGE_PORT, 8000).
`healthcheck.py worker`: a worker of this host is registered in the workers registry, running, with a heartbeat
young enough that the platform does not count it lost (`StatsService.workers`, as the admin page shows it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request


def api(timeout_s: float = 4.0) -> bool:
    port = int(os.environ.get("REELFORGE_PORT", "8000"))
    url = os.environ.get("REELFORGE_HEALTHCHECK_URL", f"http://127.0.0.1:{port}/healthz")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:  # a local, fixed URL
            return r.status == 200 and json.loads(r.read()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def worker(hostname: str | None = None) -> bool:
    from reelforge.config import Settings
    from reelforge.container import Container

    host = hostname or socket.gethostname()
    c = Container(Settings())
    try:
        return any(w["hostname"] == host and w["status"] == "running" for w in c.stats.workers())
    finally:
        c.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("api", "worker"):
        print("usage: healthcheck.py api|worker", file=sys.stderr)
        return 2
    try:
        healthy = api() if argv[0] == "api" else worker()
    except Exception as exc:  # an unreachable database is an unhealthy worker, not a crash
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
