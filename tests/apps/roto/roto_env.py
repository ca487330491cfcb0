"""What the rotoscoping API, service and pipeline tests share: clips encoded from the synthetic scenes (exact
ground truth per frame), an API with a real worker (its call server on a loopback port) on the test's database,
uploads through the real storage routes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np

from tests.apps.roto.synthetic import Clip, click_inside, standard_set
from tests.conftest import UserHandle, make_settings, register, wait_for

TERMINAL = ("succeeded", "failed", "cancelled", "dead")


def encode_clip(path: Path, clip: Clip, *, fps: int = 24, gop: int = 12, frames: int | None = None) -> Path:
    """The clip as H.264 in MP4 (yuv420p, CRF 16, fixed GOP with B-frames), written frame by frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = clip.frames if frames is None else frames
    w, h = clip.size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "16", "preset": "veryfast", "g": str(gop), "keyint_min": str(gop),
                          "sc_threshold": "0"}
        for i in range(n):
            rgb, _ = clip.frame(i)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def clip_named(name: str, *, size: tuple[int, int] = (854, 480), frames: int = 24) -> Clip:
    return next(c for c in standard_set(size=size, frames=frames) if c.name == name)


def truth(clip: Clip, frame: int, object_id: int = 1) -> np.ndarray:
    return clip.frame(frame)[1][object_id]


def click(clip: Clip, frame: int, object_id: int = 1) -> dict[str, Any]:
    point = click_inside(truth(clip, frame, object_id))
    assert point is not None
    return {"x": point[0], "y": point[1], "label": 1}


def box_of(mask: np.ndarray, pad: int = 4) -> list[float]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return [float(max(0, xs.min() - pad)), float(max(0, ys.min() - pad)), float(min(w, xs.max() + 1 + pad)),
            float(min(h, ys.max() + 1 + pad))]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@dataclass
class Env:
    container: Any
    worker: Any
    client: Any
    settings: Any


@contextmanager
def roto_env(tmp_path: Path, db_url: str, *, worker: bool = True, concurrency: int = 2,
             **overrides: Any) -> Iterator[Env]:
    """API (TestClient) and, unless `worker=False`, an in-process worker on one container and database."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker

    roto = {"cache_dir": str(tmp_path / "roto-cache"), **overrides.pop("roto", {})}
    settings = make_settings(tmp_path, db_url, roto=roto,
                             rate_limit={"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000,
                                         "reads_per_window_ip": 1_000_000, "reads_per_window_account": 1_000_000},
                             **overrides)
    c = Container(settings)
    w = Worker(c, concurrency=concurrency) if worker else None
    if w is not None:
        w.start()
    try:
        with TestClient(create_app(container=c)) as client:
            if w is not None:  # the API sees the worker once it has heartbeated with its call URL
                wait_for(lambda: _live(c), timeout=15)
            yield Env(c, w, client, settings)
    finally:
        if w is not None:
            w.stop(grace_s=5)
        c.close()


def _live(c: Any) -> bool:
    from reelforge.services.stats import lost_after_s

    with c.store.tx(write=False) as tx:
        return bool(tx.ops.call_workers(lost_after_s(c.settings)))


def http(env: Env, method: str, url: str, **kw: Any) -> Any:
    parts = urlsplit(url)
    return env.client.request(method, parts.path + ("?" + parts.query if parts.query else ""), **kw)


def upload(env: Env, user: UserHandle, path: Path, content_type: str = "video/mp4") -> str:
    data = path.read_bytes()
    r = user.post("/v1/uploads", json={"filename": path.name, "content_type": content_type, "size": len(data)})
    assert r.status_code == 201, r.text
    up = r.json()
    put = up["put"]
    assert http(env, put["method"], put["url"], content=data, headers=put["headers"]).status_code == 200
    r = user.post(f"/v1/uploads/{up['id']}/complete", json={})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def new_session(user: UserHandle, asset_id: str, **body: Any) -> dict[str, Any]:
    r = user.post("/v1/roto/sessions", json={"asset_id": asset_id, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    from reelforge.apps.roto import masks

    return masks.decode(rle)


def wait_job(user: UserHandle, job_id: str, timeout: float = 180) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = user.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in TERMINAL else None

    return dict(wait_for(done, timeout=timeout, interval=0.1))


__all__ = ["Env", "box_of", "click", "clip_named", "decode_rle", "encode_clip", "http", "iou", "new_session",
           "register", "roto_env", "truth", "upload", "wait_job"]
