"""CPU upscaling speed per backend: ncnn (the earlier default), torch fp32 and torch bf16 (channels_last, oneDNN),
on real photos at 854x480 with the real Real-ESRGAN weights, through the model adapter as the pipelines call it
(tiles included).

The backends run interleaved, one frame each per round, so a busy machine slows them alike; the median seconds
per frame counts. Quality: PSNR of each backend's uint8 output against torch fp32's, per frame (the worst frame
is reported). Achieved FLOP/s = the network's multiply-adds per input pixel x 2 x 409,920 pixels / seconds per
frame, against the cores' peak for that precision: cores x clock x FLOP per cycle per core (fp32: two AVX-512
FMA units = 64; bf16: AMX = 1024 where the CPU has AMX tiles, else AVX-512 BF16 = 128), the clock being the
one /proc/cpuinfo states.

    python -m bench.upscale_cpu --rounds 3
    python -m bench.upscale_cpu --smoke   # one small frame, one round

Writes bench/results/upscale_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "upscale_cpu.json"
MODEL = "realesr-animevideov3"


def frames(width: int, height: int) -> list[np.ndarray]:
    """Three scikit-image photos, centre-cropped to the aspect and resized to width x height."""
    from PIL import Image
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea"):
        img = Image.fromarray(getattr(data, name)())
        w, h = img.size
        target = width / height
        if w / h > target:
            cw = int(h * target)
            img = img.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
        else:
            ch = int(w / target)
            img = img.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
        out.append(np.asarray(img.resize((width, height), Image.Resampling.LANCZOS).convert("RGB")))
    return out


def clock_ghz() -> float:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) / 1000.0
    except OSError:
        pass
    return 0.0


def peak_gflops(precision: str, cores: int, flags: set[str]) -> float:
    per_cycle = 64.0
    if precision == "bf16":
        per_cycle = 1024.0 if "amx_bf16" in flags else 128.0
    return cores * clock_ghz() * per_cycle


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.size, args.scales = 1, "96x64", "2"
    width, height = (int(v) for v in args.size.split("x"))
    scales = [int(s) for s in args.scales.split(",")]

    import torch

    from reelforge.apps.upscale.models import REALESRGAN_MODELS, RealEsrganUpscaler, UpscaleConfig, autotune
    from reelforge.apps.upscale.ports import UpscaleRequest

    threads = int(os.environ.get("BENCH_THREADS") or min(2, os.cpu_count() or 1))
    torch.set_num_threads(threads)
    model = REALESRGAN_MODELS[MODEL]
    flags = autotune.cpu_flags()
    pictures = frames(width, height)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": {
            "cpu": autotune.cpu_model(), "cores": os.cpu_count(), "threads": threads, "clock_ghz": clock_ghz(),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                                     "amx_int8"}),
            "torch": torch.__version__, "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg()},
        "model": MODEL, "size": f"{width}x{height}", "rounds": args.rounds, "frames": len(pictures), "scales": {}}

    with tempfile.TemporaryDirectory() as tmp:
        variants: dict[str, RealEsrganUpscaler] = {}
        for label, backend, precision in (("ncnn", "ncnn", "auto"), ("torch-fp32", "torch", "fp32"),
                                          ("torch-bf16", "torch", "bf16")):
            if precision == "bf16" and not autotune.cpu_has_bf16():
                continue
            config = UpscaleConfig(models_dir=Path(tmp), device="cpu", backend=backend, precision=precision,
                                   threads=threads)
            variants[label] = RealEsrganUpscaler(model, config)
        auto = RealEsrganUpscaler(model, UpscaleConfig(models_dir=Path(tmp), device="cpu", backend="auto",
                                                       threads=threads))
        start = time.perf_counter()
        auto.setup()
        auto_details = auto.details()
        results["auto"] = {"backend": auto_details["backend"], "precision": auto_details["precision"],
                           "first_use_measure_s": round(time.perf_counter() - start, 2),
                           "measured": auto_details["measured"]}

        for scale in scales:
            times: dict[str, list[float]] = {label: [] for label in variants}
            outputs: dict[str, list[np.ndarray]] = {label: [] for label in variants}
            for adapter in variants.values():  # warm-up: load, convert, first-call allocations
                adapter.run(UpscaleRequest([pictures[0][:64, :64]], scale))
            for r in range(args.rounds):
                for i, picture in enumerate(pictures):
                    for label, adapter in variants.items():
                        t0 = time.perf_counter()
                        out = adapter.run(UpscaleRequest([picture], scale)).images[0]
                        times[label].append(time.perf_counter() - t0)
                        if r == 0:
                            outputs[label].append(out)
                            assert i == len(outputs[label]) - 1
            flops = model.macs_per_pixel * 2.0 * width * height
            rows = {}
            ncnn_s = statistics.median(times["ncnn"]) if "ncnn" in times else None
            for label, ts in times.items():
                s = statistics.median(ts)
                precision = "bf16" if label.endswith("bf16") else "fp32"
                worst = min(autotune.psnr(a.astype(np.float32) / 255, b.astype(np.float32) / 255)
                            for a, b in zip(outputs[label], outputs["torch-fp32"], strict=True))
                rows[label] = {
                    "s_per_frame": round(s, 3), "frames_per_s": round(1 / s, 3),
                    "speedup_vs_ncnn": round(ncnn_s / s, 2) if ncnn_s else None,
                    "min_psnr_vs_torch_fp32_db": round(worst, 2),
                    "achieved_gflops": round(flops / s / 1e9, 1),
                    "peak_gflops": round(peak_gflops(precision, threads, flags), 1),
                    "share_of_peak": round(flops / s / 1e9 / peak_gflops(precision, threads, flags), 3)
                    if clock_ghz() else None,
                    "all_s": [round(t, 3) for t in ts]}
            results["scales"][f"x{scale}"] = rows
            print(f"x{scale}:", json.dumps({k: {kk: v[kk] for kk in ("s_per_frame", "speedup_vs_ncnn",
                                                                      "min_psnr_vs_torch_fp32_db",
                                                                      "achieved_gflops")}
                                             for k, v in rows.items()}))
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    if not args.smoke:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["auto"]))
    return results


if __name__ == "__main__":
    main()
