"""The worker processes of `reelforge run`: started with the server, restarted when they die, stopped with it.

A child that exits while the supervisor is not stopping (a crash, an OOM kill, `kill -9`) is started again
after a backoff: `restart_base_s` when it had run for `healthy_after_s` or more, doubling for each quick death
in a row up to `restart_max_s`, so a worker that cannot start does not spin. Each death and restart is logged,
and `on_death(pid, returncode)` lets the caller record it (the run command marks the dead worker's
registration lost and hands its jobs' leases back at once).

`stop()` sends SIGTERM to every child (each finishes or hands back its jobs within its grace period), waits
up to `grace_s`, kills what is left and waits for it, so nothing outlives the supervisor. `kill()` (a second
signal) skips the wait.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("reelforge.supervisor")

_POLL_S = 0.2


@dataclass
class _Slot:
    n: int
    proc: subprocess.Popen[Any] | None = None
    started: float = 0.0
    quick_deaths: int = 0  # deaths in a row after less than healthy_after_s
    restarts: int = 0
    next_start: float = 0.0
    history: list[tuple[int, int]] = field(default_factory=list)  # (pid, returncode) of dead children


class Supervisor:
    """Keeps `count` copies of `argv` running until :meth:`stop`."""

    def __init__(self, argv: Sequence[str], count: int, *, env: Mapping[str, str] | None = None,
                 grace_s: float = 30.0, restart_base_s: float = 1.0, restart_max_s: float = 60.0,
                 healthy_after_s: float = 60.0, on_death: Callable[[int, int], None] | None = None) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.grace_s = grace_s
        self.restart_base_s = restart_base_s
        self.restart_max_s = restart_max_s
        self.healthy_after_s = healthy_after_s
        self.on_death = on_death
        self.slots = [_Slot(i) for i in range(max(0, count))]
        # Reentrant: kill() runs in a signal handler, on the main thread, possibly inside stop().
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._killed = False
        self._thread: threading.Thread | None = None

    @property
    def expected(self) -> int:
        """How many workers this process is supposed to keep running."""
        return len(self.slots)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def pids(self) -> list[int]:
        """The children alive now."""
        with self._lock:
            return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def restarts(self) -> int:
        with self._lock:
            return sum(s.restarts for s in self.slots)

    def start(self) -> None:
        with self._lock:
            for slot in self.slots:
                self._spawn(slot)
        if self.slots:
            self._thread = threading.Thread(target=self._watch, name="reelforge-supervisor", daemon=True)
            self._thread.start()

    def _spawn(self, slot: _Slot) -> None:
        slot.proc = subprocess.Popen(self.argv, env=self.env)
        slot.started = time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.wait(_POLL_S):
            deaths: list[tuple[int, int]] = []
            with self._lock:
                if self._stopping.is_set():
                    return
                now = time.monotonic()
                for slot in self.slots:
                    proc = slot.proc
                    if proc is not None and proc.poll() is not None:
                        ran = now - slot.started
                        slot.quick_deaths = 0 if ran >= self.healthy_after_s else slot.quick_deaths + 1
                        delay = min(self.restart_max_s,
                                    self.restart_base_s * 2 ** max(0, slot.quick_deaths - 1))
                        slot.next_start = now + delay
                        slot.proc = None
                        slot.history.append((proc.pid, int(proc.returncode)))
                        deaths.append((proc.pid, int(proc.returncode)))
                        log.warning("worker %d (pid %d) exited with %s after %.1f s; restarting it in %.1f s",
                                    slot.n, proc.pid, _describe(int(proc.returncode)), ran, delay)
                    elif proc is None and now >= slot.next_start:
                        try:
                            self._spawn(slot)
                        except OSError:
                            log.exception("could not restart worker %d", slot.n)
                            slot.next_start = now + self.restart_max_s
                            continue
                        slot.restarts += 1
                        log.warning("worker %d restarted (pid %d, restart %d)", slot.n,
                                    slot.proc.pid if slot.proc is not None else -1, slot.restarts)
            for pid, code in deaths:
                if self.on_death is not None:
                    try:
                        self.on_death(pid, code)
                    except Exception:
                        log.exception("could not record the death of worker pid %d", pid)

    def stop(self) -> bool:
        """SIGTERM every child, wait up to grace_s, then kill the rest; True when all stopped in time."""
        with self._lock:
            self._stopping.set()
            procs = [s.proc for s in self.slots if s.proc is not None]
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.grace_s
        graceful = True
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                graceful = False
                log.warning("worker pid %d did not stop within %.0f s; killing it", p.pid, self.grace_s)
                p.kill()
                p.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return graceful and not self._killed

    def kill(self) -> None:
        """Kill every child now (a second stop signal); stop() then only waits for them."""
        self._stopping.set()
        self._killed = True
        with self._lock:
            procs = [s.proc for s in self.slots if s.proc is not None]
        for p in procs:
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"
