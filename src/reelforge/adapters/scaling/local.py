"""Workers as processes on this machine: `reelforge worker` children, started and stopped by the autoscaler.

Each resource class has its own children, started with ``--kind`` for that class's job kinds (so a cpu worker
never claims a gpu job). Stopping sends SIGTERM to the newest children (a worker finishes or hands back its jobs
within its grace); they are counted no more at once and reaped as they exit.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger("reelforge.autoscale.local")


class LocalProcessScaler:
    def __init__(self, kinds_of: Callable[[str], Sequence[str]], *, concurrency: Mapping[str, int] | None = None,
                 env: Mapping[str, str] | None = None, argv: Sequence[str] | None = None,
                 grace_s: float = 30.0, on_start: Callable[[str, int], None] | None = None) -> None:
        self.kinds_of = kinds_of
        self.concurrency = dict(concurrency or {})
        self.env = dict(env) if env is not None else dict(os.environ)
        self.argv = list(argv) if argv is not None else [sys.executable, "-m", "reelforge", "worker"]
        self.grace_s = grace_s
        self.on_start = on_start
        self.live: dict[str, list[subprocess.Popen[Any]]] = {}
        self.stopping: list[tuple[subprocess.Popen[Any], float]] = []
        self.started = 0
        self._lock = threading.Lock()

    def _reap(self) -> None:
        for cls, procs in self.live.items():
            dead = [p for p in procs if p.poll() is not None]
            for p in dead:
                log.warning("%s worker %d exited with %s", cls, p.pid, p.returncode)
            self.live[cls] = [p for p in procs if p.poll() is None]
        now = time.monotonic()
        left = []
        for p, since in self.stopping:
            if p.poll() is not None:
                continue
            if now - since > self.grace_s:
                log.warning("worker %d did not stop within %.0fs: killed", p.pid, self.grace_s)
                p.kill()
                p.wait()
                continue
            left.append((p, since))
        self.stopping = left

    def current(self, resource_class: str) -> int:
        with self._lock:
            self._reap()
            return len(self.live.get(resource_class, []))

    def pids(self, resource_class: str) -> list[int]:
        with self._lock:
            return [p.pid for p in self.live.get(resource_class, [])]

    def set_desired(self, resource_class: str, count: int) -> None:
        with self._lock:
            self._reap()
            procs = self.live.setdefault(resource_class, [])
            while len(procs) < count:
                argv = [*self.argv, "--concurrency", str(self.concurrency.get(resource_class, 1))]
                for kind in self.kinds_of(resource_class):
                    argv += ["--kind", kind]
                p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL)
                procs.append(p)
                self.started += 1
                log.info("started %s worker %d", resource_class, p.pid)
                if self.on_start is not None:
                    self.on_start(resource_class, p.pid)
            while len(procs) > count:
                p = procs.pop()  # the newest first
                log.info("stopping %s worker %d", resource_class, p.pid)
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    continue
                self.stopping.append((p, time.monotonic()))

    def close(self, wait_s: float | None = None) -> None:
        """SIGTERM every worker and wait for them (killing those past the grace)."""
        with self._lock:
            for procs in self.live.values():
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                        self.stopping.append((p, time.monotonic()))
            self.live = {}
            deadline = time.monotonic() + (self.grace_s if wait_s is None else wait_s)
            for p, _ in self.stopping:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self.stopping = []
