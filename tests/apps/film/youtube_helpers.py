"""What the YouTube publishing tests share: the fake server as a fixture, connecting a user through the real routes
and the fake's authorization endpoint, the assets a publish names, waiting for jobs."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from tests.apps.film.fake_youtube import FakeYoutube

TERMINAL = ("succeeded", "failed", "cancelled", "dead")
VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nWhere are you?\n"


@pytest.fixture
def fake() -> Iterator[FakeYoutube]:
    server = FakeYoutube().start()
    yield server
    server.stop()


def follow_consent(fake: FakeYoutube, authorize_url: str) -> tuple[str, dict[str, str]]:
    """Open the authorization URL on the fake (consent is immediate): (callback path, its query)."""
    assert authorize_url.startswith(fake.base_url + "/o/oauth2/auth?"), authorize_url
    r = httpx.get(authorize_url, follow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    target = urlsplit(r.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == "http://testserver", target
    return target.path, {k: v[0] for k, v in parse_qs(target.query).items()}


def connect(client: Any, user: Any, fake: FakeYoutube) -> dict[str, Any]:
    """Connect `user`'s channel end to end: connect -> the fake's consent -> the callback. The callback's answer."""
    r = user.post("/v1/film/youtube/connect")
    assert r.status_code == 200, r.text
    path, query = follow_consent(fake, r.json()["authorize_url"])
    assert query["state"] == r.json()["state"]
    cb = client.get(path, params=query)  # Google's redirect brings no bearer token
    assert cb.status_code == 200, cb.text
    return dict(cb.json())


def video_bytes(size: int = 5 * 256 * 1024 + 12345) -> bytes:
    return os.urandom(size)


def video_asset(container: Any, owner_id: str, data: bytes) -> str:
    return str(container.assets.store_output(owner_id=owner_id, job_id=None, data=data, content_type="video/mp4",
                                             filename="film.mp4").id)


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (20, 60, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def thumbnail_asset(container: Any, owner_id: str) -> str:
    return str(container.assets.store_output(owner_id=owner_id, job_id=None, data=jpeg(), content_type="image/jpeg",
                                             filename="poster.jpg").id)


def captions_asset(container: Any, owner_id: str) -> str:
    return str(container.assets.store_output(owner_id=owner_id, job_id=None, data=VTT.encode(),
                                             content_type="text/vtt", filename="film.en.vtt").id)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_job(user: Any, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = user.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in TERMINAL:
            return dict(job)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")
