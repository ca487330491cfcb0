"""Model adapter metering: every model run a step makes is written as one `model_invocations` row.

The worker hands steps a :class:`MeteredModels` in place of the registry. Each run records its task and
model, outcome, run time, load time (when this run loaded the model) and the units it processed, so
that `/metrics` (on any API process) and the model error-rate alarm see every worker's runs.
A model run costs at least tens of milliseconds of compute; one small insert next to it is noise.
Recording is best-effort: a failed insert is logged, never raised into the step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sized
from typing import Any

from reelforge.errors import JobCancelled, ReelforgeError
from reelforge.observability import job_id_var

log = logging.getLogger("reelforge.metering")


def units_of(task: str, request: Any, result: Any) -> tuple[str | None, float]:
    """What one run processed: ("images" | "frames" | "audio_seconds" | ..., how many).

    An adapter result may say it itself with a `units` attribute, a (unit, amount) pair; otherwise the
    common result shapes are recognized: `images` (a list), `frames` (a list or a count), and audio
    durations (`audio_s`, `duration_s`) for speech tasks. The video-understanding tasks (`video.participation`,
    `video.embed`) count seconds of video analysed ("video_seconds"): the request's `duration_s` (the
    pipeline reads it from the file's headers), else the duration the result reports (an `activity` or
    `duration_s` value) — the same unit whichever adapter, local or hosted, ran.
    """
    declared = getattr(result, "units", None)
    if isinstance(declared, tuple) and len(declared) == 2:
        return str(declared[0]), float(declared[1])
    if task in VIDEO_TASKS:
        seconds = _video_seconds(request, result)
        return ("video_seconds", seconds) if seconds is not None else (None, 0.0)
    images = getattr(result, "images", None)
    if isinstance(images, Sized) and not isinstance(images, str | bytes):
        return "images", float(len(images))
    frames = getattr(result, "frames", None)
    if isinstance(frames, Sized) and not isinstance(frames, str | bytes):
        return "frames", float(len(frames))
    if isinstance(frames, int | float):
        return "frames", float(frames)
    for attr in ("audio_s", "duration_s"):
        value = getattr(result, attr, None)
        if isinstance(value, int | float) and task.startswith("speech."):
            return "audio_seconds", float(value)
    return None, 0.0


VIDEO_TASKS = ("video.participation", "video.embed")


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _video_seconds(request: Any, result: Any) -> float | None:
    seconds = _number(getattr(request, "duration_s", None))
    if seconds is None:
        activity = getattr(result, "activity", None)
        seconds = _number(activity.get("duration_s")) if isinstance(activity, dict) else None
    if seconds is None:
        seconds = _number(getattr(result, "duration_s", None))
    return seconds


def error_code(exc: BaseException) -> str:
    if isinstance(exc, JobCancelled):
        return "cancelled"
    if isinstance(exc, ReelforgeError):
        return exc.code[:100]
    return type(exc).__name__[:100]


class MeteredModels:
    """The model registry as steps see it: same interface, with `run()` metered."""

    def __init__(self, registry: Any, store: Any, *, worker_id: str | None = None) -> None:
        self._registry = registry
        self._store = store
        self._worker_id = worker_id
        self._lock = threading.Lock()
        self._loads_seen: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)

    def run(self, task: str, name: str, request: Any, **kwargs: Any) -> Any:
        """ensure_ready() (timed as the load when it loads), then the registry's run(), both recorded."""
        started = time.perf_counter()
        try:
            self._registry.ensure_ready(task, name)
        except BaseException as exc:
            self._record(task, name, ok=False, error=error_code(exc), seconds=time.perf_counter() - started)
            raise
        load_s = self._new_load(task, name)
        run_started = time.perf_counter()
        try:
            result = self._registry.run(task, name, request, **kwargs)
        except BaseException as exc:
            self._record(task, name, ok=False, error=error_code(exc), seconds=time.perf_counter() - run_started,
                         load_s=load_s)
            raise
        unit, units = units_of(task, request, result)
        self._record(task, name, ok=True, seconds=time.perf_counter() - run_started, load_s=load_s, unit=unit,
                     units=units)
        return result

    def record_native(self, task: str, name: str, *, seconds: float, unit: str, units: float) -> None:
        """Record a run that a step did without calling run() (e.g. a resample done inside the video decoder)."""
        self._record(task, name, ok=True, seconds=seconds, unit=unit, units=units)

    def _new_load(self, task: str, name: str) -> float | None:
        """The load time of this adapter if it loaded and no run has reported that load yet."""
        key = f"{task}/{name}"
        with self._lock:
            if key in self._loads_seen:
                return None
        stats = self._registry.stats().get(key) or {}
        if not stats.get("loaded"):
            return None
        with self._lock:
            if key in self._loads_seen:
                return None
            self._loads_seen.add(key)
        value = stats.get("load_s")
        return float(value) if value is not None else None

    def _record(self, task: str, model: str, *, ok: bool, seconds: float, error: str | None = None,
                load_s: float | None = None, unit: str | None = None, units: float = 0.0) -> None:
        try:
            with self._store.tx() as tx:
                tx.alarms.add_model_invocation(task=task[:64], model=model[:100], job_id=job_id_var.get(),
                                               worker_id=self._worker_id, ok=ok, error=error, seconds=round(seconds, 6),
                                               load_s=load_s, unit=unit, units=units)
        except Exception:
            log.warning("could not record a model invocation of %s/%s", task, model, exc_info=True)
