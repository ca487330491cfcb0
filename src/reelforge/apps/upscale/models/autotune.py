"""`upscale.backend = "auto"` on a CPU: the fastest correct backend, measured once per machine.

Candidates are every CPU runtime this machine can run: the ncnn files, the converted torch model in fp32, and in
bf16 where the processor has bfloat16 instructions (AVX-512 BF16 or AMX). Each runs the same probe frame (a
deterministic picture with gradients, edges and texture, sized to the network's cost; the model's smallest
scale) after one warm-up; the
fastest of two timed runs counts. A candidate is correct when its output is within `MIN_PSNR_DB` of the fp32
torch output, which is the reference. The choice is kept in a JSON file beside the converted weights, keyed by
what decides the speed (processor model and flags, thread count, library versions, the weights' hash), so a
worker measures once per machine and model, and again after an upgrade.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("reelforge.upscale")

MIN_PSNR_DB = 40.0
PROBE_SIDE = 192
PROBE_MACS = 1.5e10
CACHE_FILE = "backend-choice.json"
_FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
_lock = threading.Lock()


@dataclass(frozen=True)
class Candidate:
    backend: str  # "ncnn" | "torch"
    precision: str  # "fp32" | "bf16"

    @property
    def label(self) -> str:
        return self.backend if self.backend == "ncnn" else f"torch-{self.precision}"


@dataclass(frozen=True)
class Choice:
    backend: str
    precision: str
    # Per candidate label: seconds per probe frame and PSNR (dB) against the fp32 reference.
    measured: dict[str, dict[str, float]]
    probe: str
    key: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cpu_flags() -> set[str]:
    """The processor's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """Whether bf16 convolutions run on native instructions here (otherwise bf16 is emulated and slower)."""
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_precision(requested: str) -> str:
    """The torch precision on a CPU for `upscale.precision`: auto is bf16 where the CPU has it, else fp32."""
    if requested in ("fp32", "bf16"):
        return requested
    return "bf16" if cpu_has_bf16() else "fp32"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "absent"


def machine_key(weights_sha: str, threads: int) -> str:
    """What decides which backend is fastest: the processor, the threads, the libraries and the weights."""
    flags = sorted(cpu_flags() & set(_FLAGS_THAT_MATTER))
    parts = {"cpu": cpu_model(), "flags": flags, "cpus": os.cpu_count(), "threads": threads,
             "torch": _version("torch"), "ncnn": _version("ncnn"), "weights": weights_sha}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def probe_side(macs_per_pixel: int) -> int:
    """The probe's side for a network: about PROBE_MACS of work in fp32, between 64 and PROBE_SIDE pixels (a heavy
    network is measured on a smaller picture, so the first use stays a matter of seconds)."""
    return int(max(64, min(PROBE_SIDE, (PROBE_MACS / max(1, macs_per_pixel)) ** 0.5)))


def probe_frame(side: int = PROBE_SIDE) -> np.ndarray:
    """A deterministic RGB picture with what a video frame has: smooth gradients, hard edges and fine texture."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r = 128 + 90 * np.sin(xx / 11.0) * np.cos(yy / 17.0)
    g = 255 * xx / side
    b = np.where((xx // 24 + yy // 24) % 2 == 0, 200.0, 40.0)  # a checkerboard: edges at every scale's tile
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 10, (side, side, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(1.0 / mse))


def candidates(ncnn_available: bool, torch_available: bool) -> list[Candidate]:
    found = []
    if torch_available:
        found.append(Candidate("torch", "fp32"))
        if cpu_has_bf16():
            found.append(Candidate("torch", "bf16"))
    if ncnn_available:
        found.append(Candidate("ncnn", "fp32"))
    return found


def _time(run: Callable[[np.ndarray], np.ndarray], frame: np.ndarray) -> tuple[float, np.ndarray]:
    out = run(frame)  # warm-up: first-call allocations and oneDNN's kernel choice
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        out = run(frame)
        best = min(best, time.perf_counter() - start)
    return best, out


def cache_path(cache_dir: Path) -> Path:
    return cache_dir / CACHE_FILE


def cached(cache_dir: Path, key: str) -> Choice | None:
    try:
        data = json.loads(cache_path(cache_dir).read_text())
        entry = data[key]
        return Choice(**entry)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(cache_dir: Path, choice: Choice) -> None:
    path = cache_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[choice.key] = choice.to_json()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def choose(cache_dir: Path, key: str, runners: dict[Candidate, Callable[[np.ndarray], np.ndarray]],
           *, frame: np.ndarray | None = None) -> Choice:
    """The cached choice for `key`, or measure every runner on the probe, keep the fastest correct one."""
    with _lock:
        hit = cached(cache_dir, key)
        if hit is not None:
            return hit
        frame = probe_frame() if frame is None else frame
        batch = frame[None]
        reference_candidate = Candidate("torch", "fp32")
        results: dict[Candidate, tuple[float, np.ndarray]] = {}
        for candidate, run in runners.items():
            try:
                results[candidate] = _time(run, batch)
            except Exception as exc:  # a runtime that fails here is no candidate
                log.warning("upscale backend %s failed its measurement: %s", candidate.label, exc)
        if not results:
            raise RuntimeError("no upscale backend could run the probe frame")
        reference = results.get(reference_candidate, next(iter(results.values())))[1]
        measured = {c.label: {"s_per_probe": round(t, 5), "psnr_db": round(psnr(out, reference), 2)}
                    for c, (t, out) in results.items()}
        correct = [c for c in results if measured[c.label]["psnr_db"] >= MIN_PSNR_DB]
        best = min(correct, key=lambda c: results[c][0])
        choice = Choice(best.backend, best.precision, measured, f"{frame.shape[1]}x{frame.shape[0]}", key)
        log.info("upscale backend measured: %s chosen (%s)", best.label, measured)
        try:
            _store(cache_dir, choice)
        except OSError as exc:  # a read-only models folder: measure again next start
            log.warning("could not keep the upscale backend choice: %s", exc)
        return choice
