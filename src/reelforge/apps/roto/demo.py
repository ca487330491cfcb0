"""`reelforge demo` for rotoscoping: a generated clip (a textured disc gliding over a gradient, with a tone), one
click on the disc, the mask propagated through the clip, and the exports downloaded."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from reelforge.cli.demo import download_asset, finish_job, put_signed

SIZE = (320, 180)
FPS = 24
FRAMES = 36
RADIUS = 34
EXPORTS = ["coco", "alpha_webm", "greenscreen"]


def disc_centre(n: int) -> tuple[float, float]:
    """Where the disc is on frame n: 3 px a frame to the right, bobbing a little."""
    x = RADIUS + 40 + 3.0 * n
    y = SIZE[1] / 2 + 10 * np.sin(2 * np.pi * n / FRAMES)
    return float(x), float(y)


def disc_mask(n: int) -> np.ndarray:
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = disc_centre(n)
    return np.asarray((xx - cx) ** 2 + (yy - cy) ** 2 <= RADIUS**2)


def make_clip(path: Path) -> Path:
    """The clip as H.264 + AAC in MP4 (frames drawn here, the tone from ffmpeg's sine source)."""
    import av

    from reelforge.adapters.media.ffmpeg import run_ffmpeg

    w, h = SIZE
    silent = path.with_name(f".{path.stem}-video.mp4")
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(7)
    grain = rng.integers(-12, 13, (h, w, 1))
    background = np.clip(np.dstack((40 + 60 * xx / w, 60 + 50 * yy / h, 110 + 40 * (1 - xx / w))) + grain, 0, 255)
    background = background.astype(np.uint8)
    # the disc's own texture, which moves with it (blotches the optical flow can follow)
    side = 2 * RADIUS + 2
    blotches = rng.integers(-45, 46, (side // 6 + 1, side // 6 + 1))
    texture = np.kron(blotches, np.ones((6, 6), dtype=np.int64))[:side, :side]
    with av.open(str(silent), "w") as out:
        stream: Any = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "g": "12"}
        for n in range(FRAMES):
            frame = background.copy()
            disc = disc_mask(n)
            cx, cy = disc_centre(n)
            tx = np.clip(xx - round(cx) + RADIUS + 1, 0, side - 1)
            ty = np.clip(yy - round(cy) + RADIUS + 1, 0, side - 1)
            t = texture[ty, tx]
            orange = np.clip(np.stack([230 + t // 3, 140 + t, 40 + t // 2], axis=-1), 0, 255)
            frame[disc] = orange[disc].astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(frame.astype(np.uint8, copy=False), format="rgb24")
            vf.pts = n
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    try:
        run_ffmpeg(["-i", str(silent), "-f", "lavfi", "-i", f"sine=frequency=330:duration={FRAMES / FPS}",
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-shortest", str(path)], timeout=60)
    finally:
        silent.unlink(missing_ok=True)
    return path


def _upload(http: httpx.Client, path: Path) -> str:
    data = path.read_bytes()
    up = http.post("/v1/uploads", json={"filename": path.name, "content_type": "video/mp4", "size": len(data)})
    up.raise_for_status()
    ticket = up.json()
    put_signed(ticket["put"], data)
    done = http.post(f"/v1/uploads/{ticket['id']}/complete", json={})
    done.raise_for_status()
    return str(done.json()["id"])


def _prompt(http: httpx.Client, session_id: str, body: dict[str, Any], wait_s: float = 60.0) -> httpx.Response:
    """The prompt, sent again while no worker answers yet (503: the workers are still starting)."""
    deadline = time.monotonic() + wait_s
    while True:
        r = http.post(f"/v1/roto/sessions/{session_id}/prompts", json=body)
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(1.0)


def run_demo(http: httpx.Client, out_dir: Path) -> int:
    """Upload the generated clip, click the disc on frame 0, propagate, download the exports."""
    from reelforge.apps.roto import masks

    src = make_clip(out_dir / "roto-source.mp4")
    session = http.post("/v1/roto/sessions", json={"asset_id": _upload(http, src), "name": "demo disc"})
    if session.status_code >= 400:
        print(f"roto session refused: {session.status_code} {session.text}")
        return 1
    s = session.json()
    print(f"roto session {s['id']}: {s['width']}x{s['height']}, {s['frame_count']} frames at {s['fps']:g} fps")
    x, y = disc_centre(0)
    t0 = time.monotonic()
    r = _prompt(http, s["id"], {"frame": 0, "points": [{"x": x, "y": y, "label": 1}]})
    if r.status_code >= 400:
        print(f"roto prompt refused: {r.status_code} {r.text}")
        return 1
    answer = r.json()
    mask = masks.decode(answer["masks"][0]["rle"])
    truth = disc_mask(0)
    iou = float((mask & truth).sum() / max(1, (mask | truth).sum()))
    print(f"  click on frame 0: mask of {int(mask.sum())} px (IoU {iou:.2f} with the disc) in "
          f"{time.monotonic() - t0:.1f}s")
    r = http.post(f"/v1/roto/sessions/{s['id']}/propagate", json={"exports": EXPORTS})
    if r.status_code >= 400:
        print(f"video.rotoscope refused: {r.status_code} {r.text}")
        return 1
    t0 = time.monotonic()
    job = finish_job(http, r.json())
    print(f"video.rotoscope job {job['id']}: {job['status']} in {time.monotonic() - t0:.1f}s "
          f"({job['credits']} credits)")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return 1
    ious = []
    for out in job["outputs"]["exports"]:
        name = http.get(f"/v1/assets/{out['asset_id']}").json().get("filename") or f"{job['id']}-{out['kind']}"
        path = download_asset(http, out["asset_id"], out_dir / Path(name).name)
        print(f"  {out['kind']:<12} {out['size']:>9} bytes: {path}")
        if out["kind"] == "coco":
            doc = json.loads(path.read_text())
            for a in doc["annotations"]:
                n = int(a["image_id"]) - 1
                got, want = masks.decode(a["segmentation"]), disc_mask(n)
                ious.append(float((got & want).sum() / max(1, (got | want).sum())))
    if ious:
        print(f"  propagated masks against the disc: mean IoU {np.mean(ious):.2f} over {len(ious)} frames "
              f"(lowest {min(ious):.2f})")
    return 0
