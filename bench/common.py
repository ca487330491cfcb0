"""Small pieces every benchmark uses: the machine record, and the command line's smoke mode."""

from __future__ import annotations

import argparse
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None, smoke: dict[str, Any], *, out: str = "out",
               aliases: tuple[str, ...] = ()) -> argparse.Namespace:
    """Parse argv, with ``--smoke``: a seconds-long run on tiny inputs that shows the benchmark still works end
    to end (the test suite runs every benchmark so). ``smoke`` holds that run's defaults, options given on the
    command line still win, and the results go to a temporary directory unless ``out`` (the dest of the
    results-file option) is given: a smoke run never writes bench/results/."""
    ap.add_argument("--smoke", *aliases, dest="smoke", action="store_true",
                    help="seconds-long run on tiny inputs (checks that the benchmark works; numbers mean nothing); "
                         "results go to a temporary directory unless given")
    args = ap.parse_args(argv)
    if args.smoke:
        default_out = ap.get_default(out)
        tmp = Path(tempfile.mkdtemp(prefix="rf-bench-smoke-"))
        ap.set_defaults(**smoke, **{out: type(default_out)(tmp / Path(default_out).name)})
        args = ap.parse_args(argv)
    return args
