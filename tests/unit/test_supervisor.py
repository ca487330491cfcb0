"""runtime/supervisor.py with real child processes: restart with backoff, stop with SIGTERM, then kill."""

from __future__ import annotations

import sys
import time

from reelforge.runtime.supervisor import Supervisor


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays() -> None:
    deaths: list[tuple[int, int]] = []
    sup = Supervisor([sys.executable, "-c", "raise SystemExit(3)"], 1, restart_base_s=0.1, restart_max_s=0.4,
                     on_death=lambda pid, code: deaths.append((pid, code)))
    sup.start()
    time.sleep(2.0)
    assert sup.stop()
    # 0.1 + 0.2 + 0.4 + 0.4 + ... (plus the time each child takes to start and exit): a handful, not hundreds
    assert 2 <= sup.restarts() <= 10, sup.restarts()
    assert deaths and all(code == 3 for _, code in deaths)
    assert len({pid for pid, _ in deaths}) == len(deaths)


def test_stop_sends_sigterm_then_kills_what_ignores_it() -> None:
    polite = Supervisor([sys.executable, "-c", "import time; time.sleep(60)"], 2, grace_s=5)
    polite.start()
    time.sleep(0.3)
    pids = polite.pids()
    assert len(pids) == 2
    t0 = time.monotonic()
    assert polite.stop() is True  # the default SIGTERM action ends them at once
    assert time.monotonic() - t0 < 3 and polite.pids() == []

    stubborn = Supervisor([sys.executable, "-c", "import signal, time\n"
                           "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                           "time.sleep(60)"], 1, grace_s=0.5)
    stubborn.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert stubborn.stop() is False  # killed after the grace period
    assert time.monotonic() - t0 < 3 and stubborn.pids() == []
