"""`reelforge demo` for image generation: the best usable model once, images saved."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from reelforge.cli.demo import download_asset, finish_job


def run_demo(http: httpx.Client, out_dir: Path) -> int:
    models = http.get("/v1/models", params={"task": "image.generate"}).json()["data"]
    usable = [m for m in models if m["available"]]
    print("image.generate models:")
    for m in models:
        print(f"  {'ok' if m['available'] else '--'} {m['name']}{' (test model)' if m['test_model'] else ''}"
              f"{'' if m['available'] else ': ' + str(m['reason'])}")
    if not usable:
        print("no image model can run here; skipped")
        return 1
    model = next((m["name"] for m in usable if not m["test_model"]), usable[0]["name"])
    body: dict[str, Any] = {"kind": "image.generate", "input": {
        "prompt": "a lighthouse at dusk, film still", "width": 64 if model == "tiny-sd" else 512,
        "height": 64 if model == "tiny-sd" else 512, "steps": 4 if model == "tiny-sd" else 25,
        "guidance_scale": 7.0, "seed": 42, "num_images": 2, "model": model}}
    t0 = time.monotonic()
    r = http.post("/v1/jobs", json=body, params={"wait": 60})
    r.raise_for_status()
    job = r.json()
    job = finish_job(http, job)
    print(f"image.generate job {job['id']}: {job['status']} in {time.monotonic() - t0:.1f}s "
          f"({job['credits']} credits)")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    for img in job["outputs"]["images"]:
        path = download_asset(http, img["asset_id"], out_dir / f"{job['id']}-{img['asset_id'][:8]}.png")
        print(f"  image {img['width']}x{img['height']} seed {img['seed']}: {path}")
    if job["outputs"].get("test_model"):
        print("  note: tiny-sd has random weights (a test model): the images are noise, by design.")
    return 0
