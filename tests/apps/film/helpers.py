"""What the film studio's tests share: assets stored through the platform's asset service, projects made
through the API, problem checks."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

PROBLEM = "application/problem+json"

FOUNTAIN = """Title: The Lighthouse
Author: Jane Doe

INT. LIGHTHOUSE - NIGHT

Rain hammers the glass. ANNA stares at the dark sea.

ANNA
(whispering)
Where are you?

TOM (V.O.)
I'm coming home.

EXT. PIER - DAWN

Waves crash against the pier.

ANNA
Tom!
"""


def png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def wav() -> bytes:
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return buf.getvalue()


def image_asset(container: Any, owner_id: str, **kw: Any) -> str:
    return str(container.assets.store_output(owner_id=owner_id, job_id=None, data=png(), content_type="image/png",
                                             filename="picture.png", **kw).id)


def audio_asset(container: Any, owner_id: str) -> str:
    return str(container.assets.store_output(owner_id=owner_id, job_id=None, data=wav(), content_type="audio/wav",
                                             filename="theme.wav").id)


def assert_problem(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def make_project(user: Any, **fields: Any) -> dict[str, Any]:
    body = {"title": "The Lighthouse", **fields}
    r = user.post("/v1/projects", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())
