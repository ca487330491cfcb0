"""Locating and running the ffmpeg binary.

Order: an explicit path (a setting passed by the caller), the ``REELFORGE_FFMPEG`` environment variable, the static
binary inside the ``imageio-ffmpeg`` wheel, then ``ffmpeg`` on PATH. Failures raise :class:`FFmpegError` with the
command and the tail of ffmpeg's log, never a bare ``CalledProcessError``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from reelforge import errors

log = logging.getLogger("reelforge.media")

ENV_VAR = "REELFORGE_FFMPEG"


class FFmpegError(errors.ReelforgeError):
    """ffmpeg is missing or a command failed. Not retryable: the same input fails the same way."""

    status, code, title = 500, "ffmpeg_failed", "FFmpeg failed"


class FFmpegNotFound(FFmpegError):
    status, code, title = 503, "ffmpeg_not_found", "FFmpeg binary not found"


@lru_cache(maxsize=8)
def _resolve(configured: str | None, env: str | None) -> str:
    for candidate, origin in ((configured, "setting"), (env, ENV_VAR)):
        if candidate:
            found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
            if not found:
                raise FFmpegNotFound(f"ffmpeg from {origin} does not exist or is not executable: {candidate}")
            return found
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and Path(exe).is_file():
            return str(exe)
    except Exception as exc:  # the wheel is optional; fall through to PATH
        log.debug("imageio_ffmpeg has no usable binary: %s", exc)
    found = shutil.which("ffmpeg")
    if not found:
        raise FFmpegNotFound(
            f"No ffmpeg binary: set {ENV_VAR}, install the imageio-ffmpeg package, or put ffmpeg on PATH")
    return found


def ffmpeg_exe(configured: str | None = None) -> str:
    """Path of the ffmpeg binary to run (see the module docstring for the search order)."""
    return _resolve(configured or None, os.environ.get(ENV_VAR) or None)


def run_ffmpeg(args: Sequence[str | os.PathLike[str]], *, timeout: float | None = None,
               exe: str | None = None, input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``ffmpeg -hide_banner -nostdin -y <args>``; raise :class:`FFmpegError` with the log tail on failure."""
    cmd = [ffmpeg_exe(exe), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    if input_bytes is not None:
        cmd.remove("-nostdin")
    try:
        if input_bytes is not None:
            proc = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout, check=False)
        else:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"ffmpeg timed out after {timeout:.0f} s", command=_show(cmd)) from exc
    except OSError as exc:
        raise FFmpegNotFound(f"Cannot run ffmpeg at {cmd[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise FFmpegError(f"ffmpeg exited with {proc.returncode}: {tail or 'no message'}",
                          command=_show(cmd), returncode=proc.returncode)
    return proc


def _show(cmd: Sequence[str]) -> str:
    return " ".join(f"'{c}'" if (" " in c or not c) else c for c in cmd)
