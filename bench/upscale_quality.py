"""Super-resolution quality: downscale, upscale back with each image.upscale model, compare with the original.

For every scale (x2, x3, x4) and every adapter that supports it (realesr-animevideov3, realesrgan-x4plus,
lanczos, bicubic), each sample is downscaled by the scale with Pillow's antialiased bicubic, upscaled back by
the adapter exactly as the product runs it (the registry's adapter, with its tiling), and compared with the
original by PSNR and SSIM (scikit-image; RGB, data range 255, `scale` pixels shaved at each border as is usual
in SR evaluation). Bicubic is the baseline in the same run; the table shows each model's difference from it.

Samples:
- photos: centre crops of scikit-image's bundled colour photos (astronaut, coffee, chelsea, rocket,
  motorcycle), H x W a multiple of 12 so that every scale divides it;
- video "pan": a camera pan across the Hubble deep field, encoded to H.264 with PyAV and decoded back;
- video "cartoon": flat-coloured moving shapes with outlines and text (the kind of content animevideov3 is
  tuned for), encoded and decoded the same way.

Real-ESRGAN models are GAN-trained for perceived sharpness, not for PSNR: they usually score below bicubic on
PSNR and can score above it on SSIM for flat, line-art content. The numbers say how faithful, not how sharp.

    python -m bench.upscale_quality            # full run, writes bench/results/upscale_quality.json
    python -m bench.upscale_quality --smoke    # tiny run (also --quick), results in a temp dir
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

from bench.common import parse_args

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "upscale_quality.json"
TASK = "image.upscale"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle")


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    height, width = min(height, h) // 12 * 12, min(width, w) // 12 * 12
    y, x = (h - height) // 2, (w - width) // 2
    return np.ascontiguousarray(image[y:y + height, x:x + width, :3])


def photo_samples(size: int) -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in PHOTOS:
        image = getattr(data, name)()
        if isinstance(image, tuple):
            image = image[0]
        out.append(centre_crop(image, size, size))
    return out


def _roundtrip_h264(frames: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """Encode frames to H.264 (CRF 16) and decode them back: the sample video as a decoder hands it over."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def pan_frames(count: int, size: int) -> list[np.ndarray]:
    from skimage import data

    field = data.hubble_deep_field()
    return [np.ascontiguousarray(field[100 + 3 * i:100 + 3 * i + size, 150 + 5 * i:150 + 5 * i + size])
            for i in range(count)]


def cartoon_frames(count: int, size: int) -> list[np.ndarray]:
    from PIL import Image, ImageDraw

    frames = []
    for i in range(count):
        img = Image.new("RGB", (size, size), (250, 236, 210))
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, size * 2 // 3, size, size), fill=(110, 180, 90), outline=(30, 60, 20), width=2)
        cx = 30 + 6 * i
        draw.ellipse((cx, 40, cx + size // 3, 40 + size // 3), fill=(235, 80, 60), outline=(20, 20, 20), width=3)
        draw.polygon([(size - 40 - 4 * i, 30), (size - 10 - 4 * i, 90), (size - 70 - 4 * i, 90)],
                     fill=(70, 110, 220), outline=(10, 10, 40))
        draw.line((10, size - 20, size - 10, size - 30 - 2 * i), fill=(20, 20, 20), width=2)
        draw.text((12 + 2 * i, size // 2), "reelforge", fill=(20, 20, 20))
        frames.append(np.asarray(img))
    return frames


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w // scale, h // scale), Image.Resampling.BICUBIC))


def metrics(restored: np.ndarray, original: np.ndarray, shave: int) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = restored[shave:-shave, shave:-shave] if shave else restored
    b = original[shave:-shave, shave:-shave] if shave else original
    psnr = float(peak_signal_noise_ratio(b, a, data_range=255))
    ssim = float(structural_similarity(b, a, channel_axis=2, data_range=255))
    return psnr, ssim


def run(args: argparse.Namespace) -> dict[str, Any]:
    from reelforge.adapters.models.registry import build_default_registry
    from reelforge.apps.upscale.ports import UpscaleRequest
    from reelforge.config import Settings

    workdir = Path(tempfile.mkdtemp(prefix="upscale-quality-"))
    models: dict[str, Any] = {"device": args.device}
    upscale = {"backend": args.backend, "threads": args.threads}
    settings = Settings(data_dir=Path(args.data_dir) if args.data_dir else workdir, models=models, upscale=upscale)
    registry = build_default_registry(settings)
    infos = {i.name: i for i in registry.list(TASK)}
    names = [n for n in args.models if n in infos]
    datasets = {
        "photos": photo_samples(args.size),
        "video-pan": _roundtrip_h264(pan_frames(args.frames, args.size), workdir / "pan.mp4"),
        "video-cartoon": _roundtrip_h264(cartoon_frames(args.frames, args.size), workdir / "cartoon.mp4"),
    }
    rows: list[dict[str, Any]] = []
    for scale in args.scales:
        for dataset, originals in datasets.items():
            small = [downscale(im, scale) for im in originals]
            baseline: dict[str, float] = {}
            for name in sorted(names, key=lambda n: n != "bicubic"):  # bicubic first: it is the reference
                info = infos[name]
                if scale not in info.details.get("scales", []) or not info.available:
                    continue
                registry.ensure_ready(TASK, name)
                started = time.perf_counter()
                # Photos differ in content, not size, so each is its own request; video frames go as one batch.
                if dataset == "photos":
                    outputs = [registry.run(TASK, name, UpscaleRequest([im], scale)) for im in small]
                else:
                    outputs = [registry.run(TASK, name, UpscaleRequest(small, scale))]
                elapsed = time.perf_counter() - started
                restored = [im for result in outputs for im in result.images]
                scores = [metrics(r, o, scale) for r, o in zip(restored, originals, strict=True)]
                psnr = statistics.fmean(s[0] for s in scores)
                ssim = statistics.fmean(s[1] for s in scores)
                if name == "bicubic":
                    baseline = {"psnr": psnr, "ssim": ssim}
                rows.append({
                    "scale": scale, "dataset": dataset, "model": name, "frames": len(restored),
                    "backend": outputs[0].backend, "device": outputs[0].device, "tile": outputs[0].tile,
                    "psnr_db": round(psnr, 3), "ssim": round(ssim, 4),
                    "psnr_vs_bicubic_db": round(psnr - baseline["psnr"], 3) if baseline else None,
                    "ssim_vs_bicubic": round(ssim - baseline["ssim"], 4) if baseline else None,
                    "ms_per_frame": round(1000 * elapsed / len(restored), 1),
                    "input_size": list(small[0].shape[:2]),
                })
                print(f"x{scale} {dataset:<13} {name:<22} PSNR {psnr:6.2f} dB  SSIM {ssim:.4f}  "
                      f"{1000 * elapsed / len(restored):8.1f} ms/frame", flush=True)
    speed = measure_speed(registry, names, infos, tuple(args.speed_size)) if all(args.speed_size) else []
    return {
        "benchmark": "upscale_quality",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "method": {"downscale": "Pillow BICUBIC (antialiased)", "metrics": "skimage PSNR/SSIM on RGB, data_range "
                   "255, `scale` px shaved per border", "size": args.size, "video_frames": args.frames,
                   "video_codec": "libx264 crf 16 yuv420p", "photos": list(PHOTOS)},
        "settings": models,
        "models": {n: {"backend": infos[n].details.get("backend"), "speed_class": infos[n].details.get("speed_class"),
                       "est_ms_480p": infos[n].details.get("est_ms_480p")} for n in names},
        "results": rows,
        "speed": speed,
    }


def measure_speed(registry: Any, names: list[str], infos: dict[str, Any], size: tuple[int, int]) -> list[dict[str, Any]]:
    """Time one frame of `size` (H, W) per model at its largest scale (after a warm-up call) and extrapolate to
    an 854x480 input frame by pixel count, next to the estimate behind the model's speed class."""
    from skimage import data

    from reelforge.apps.upscale.ports import UpscaleRequest

    height, width = size
    frame = centre_crop(data.hubble_deep_field(), height, width)
    out = []
    for name in names:
        info = infos[name]
        if not info.available:
            continue
        scale = max(info.details["scales"])
        registry.run(TASK, name, UpscaleRequest([frame[:32, :32].copy()], scale))
        started = time.perf_counter()
        result = registry.run(TASK, name, UpscaleRequest([frame], scale))
        elapsed = time.perf_counter() - started
        measured = 1000 * elapsed * (854 * 480) / (frame.shape[0] * frame.shape[1])
        out.append({"model": name, "scale": scale, "backend": result.backend, "device": result.device,
                    "frame": list(frame.shape[:2]), "measured_ms_480p": round(measured, 1),
                    "estimated_ms_480p": info.details.get("est_ms_480p"),
                    "speed_class": info.details.get("speed_class"), "load_avg_1m": os.getloadavg()[0]})
        print(f"speed {name:<22} x{scale}: {measured:10.1f} ms per 480p frame (measured on {frame.shape[1]}x"
              f"{frame.shape[0]}, scaled by pixels); rule estimate {info.details.get('est_ms_480p')} ms, "
              f"class {info.details.get('speed_class')}", flush=True)
    return out


def table(report: dict[str, Any]) -> str:
    lines = [f"{'scale':<6}{'dataset':<15}{'model':<23}{'PSNR dB':>9}{'vs bic':>8}{'SSIM':>8}{'vs bic':>9}"
             f"{'ms/frame':>10}"]
    for r in report["results"]:
        dp = f"{r['psnr_vs_bicubic_db']:+.2f}" if r["psnr_vs_bicubic_db"] is not None else "-"
        ds = f"{r['ssim_vs_bicubic']:+.4f}" if r["ssim_vs_bicubic"] is not None else "-"
        lines.append(f"x{r['scale']:<5}{r['dataset']:<15}{r['model']:<23}{r['psnr_db']:>9.2f}{dp:>8}"
                     f"{r['ssim']:>8.4f}{ds:>9}{r['ms_per_frame']:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--size", type=int, default=240, help="sample side in pixels (a multiple of 12)")
    ap.add_argument("--frames", type=int, default=8, help="frames per sample video")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--models", nargs="+",
                    default=["bicubic", "lanczos", "realesr-animevideov3", "realesrgan-x4plus"])
    ap.add_argument("--backend", default="auto", choices=["auto", "ncnn", "torch"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default="", help="where converted weights are cached (default: a temp dir)")
    ap.add_argument("--speed-size", type=int, nargs=2, default=[144, 256], metavar=("H", "W"),
                    help="frame size for the speed measurement (0 0 skips it)")
    # Smoke run: 48px samples, 2 frames, x2 only, no x4plus.
    quick = {"size": 48, "frames": 2, "scales": [2], "speed_size": [24, 36],
             "models": [m for m in ap.get_default("models") if m != "realesrgan-x4plus"]}
    args = parse_args(ap, argv, quick, aliases=("--quick",))
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    for row in report["speed"]:
        print(f"speed {row['model']:<22} measured {row['measured_ms_480p']:>10.1f} ms/480p frame, "
              f"rule {row['estimated_ms_480p']} ms ({row['speed_class']})")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
