"""`image.upscale` through the real API and worker: PNG in, PNG/JPEG/WebP out, with the same models as video."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import register
from tests.fixtures.videos import make_png, make_testsrc
from tests.integration.test_video_upscale import assert_problem, download, submit, upload, upscale_env, wait_job


def test_png_upscaled_and_stored(tmp_path: Path, sqlite_url: str) -> None:
    png = make_png(tmp_path / "still.png", size=(64, 48))
    with upscale_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        asset = upload(env, alice, png, "image/png")
        r = submit(alice, "image.upscale", asset_id=asset["id"], model="realesr-animevideov3", scale=2)
        assert r.status_code == 202, r.text
        assert r.json()["credits"] == 1 and r.json()["input"]["source"] == {"width": 64, "height": 48}
        job = wait_job(alice, r.json()["id"])
        assert job["status"] == "succeeded", job
        out = job["outputs"]
        assert (out["width"], out["height"], out["format"]) == (128, 96, "png")
        img = Image.open(download(env, alice, out["asset_id"], tmp_path / "out.png"))
        assert img.format == "PNG" and img.size == (128, 96)
        # the model's output resembles the source scaled up (not noise, not a blank frame)
        src = np.asarray(Image.open(png).convert("RGB").resize((128, 96), Image.Resampling.BICUBIC), dtype=float)
        got = np.asarray(img.convert("RGB"), dtype=float)
        assert np.abs(src - got).mean() < 25 and got.std() > 20

        r = submit(alice, "image.upscale", asset_id=asset["id"], model="lanczos", scale=3, format="jpeg")
        job = wait_job(alice, r.json()["id"])
        assert job["status"] == "succeeded", job
        jpeg = download(env, alice, job["outputs"]["asset_id"], tmp_path / "out.jpg")
        assert Image.open(io.BytesIO(jpeg.read_bytes())).size == (192, 144)
        assert alice.get(f"/v1/assets/{job['outputs']['asset_id']}").json()["content_type"] == "image/jpeg"


def test_image_bad_input(tmp_path: Path, sqlite_url: str) -> None:
    png = make_png(tmp_path / "still.png", size=(64, 48))
    video = make_testsrc(tmp_path / "clip.mp4", seconds=1.0)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image" * 10)
    with upscale_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        bob = register(env.client, "bob@example.com")
        img = upload(env, alice, png, "image/png")["id"]
        assert_problem(submit(alice, "image.upscale", asset_id=img, model="nope", scale=2), 422, "unknown_model")
        assert_problem(submit(alice, "image.upscale", asset_id=img, model="realesrgan-x4plus", scale=3), 422,
                       "unsupported_scale")
        assert_problem(submit(alice, "image.upscale", asset_id=img, model="lanczos", scale=2, format="gif"), 422,
                       "validation_error")
        assert_problem(submit(bob, "image.upscale", asset_id=img, model="lanczos", scale=2), 404, "asset_not_found")
        assert_problem(submit(alice, "image.upscale", asset_id=uuid.uuid4().hex, model="lanczos", scale=2), 404,
                       "asset_not_found")
        vid = upload(env, alice, video, "video/mp4")["id"]
        assert_problem(submit(alice, "image.upscale", asset_id=vid, model="lanczos", scale=2), 422, "not_an_image")
        bad = upload(env, alice, junk, "image/png")["id"]
        assert_problem(submit(alice, "image.upscale", asset_id=bad, model="lanczos", scale=2), 422, "not_an_image")
        env.container.settings.upscale.max_image_pixels = 32 * 32
        assert_problem(submit(alice, "image.upscale", asset_id=img, model="lanczos", scale=2), 422,
                       "image_too_large")
        assert alice.get("/v1/jobs").json()["data"] == []


def test_decompression_bomb_is_refused_at_submit(tmp_path: Path, sqlite_url: str) -> None:
    """A 40000x40000 PNG (a few hundred kilobytes) is measured from its header and refused with a 422, never a 500;
    nothing is queued and no credit is taken."""
    from tests.fixtures.hostile import make_png_bomb

    bomb = make_png_bomb(tmp_path / "bomb.png")
    mid = make_png_bomb(tmp_path / "mid.png", 5000, 5000)  # under Pillow's own threshold, over the upscale cap
    with upscale_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        before = alice.get("/v1/credits").json()["balance"]
        for path in (bomb, mid):
            asset = upload(env, alice, path, "image/png")["id"]
            body = assert_problem(submit(alice, "image.upscale", asset_id=asset, model="lanczos", scale=2), 422,
                                  "image_too_large")
            assert "/" not in body["detail"]
        assert alice.get("/v1/jobs").json()["data"] == []
        assert alice.get("/v1/credits").json()["balance"] == before
