"""What the render tests share: a three-scene screenplay with two characters, portraits with a face, and a
helper that renders a project and waits for the job."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.conftest import wait_for

TERMINAL = ("succeeded", "failed", "dead", "cancelled")

SCRIPT = """Title: The Storm

INT. KITCHEN - NIGHT

Rain on the window. Somebody knocks at the door.

MARTHA
Don't open it. Not tonight.

JOHN
It could be Tom. He said he would come back before the storm.

EXT. PORCH - NIGHT

Thunder rolls over the hills.

JOHN
Tom? Is that you?

INT. KITCHEN - LATER

MARTHA
We leave at dawn, whatever happens.
"""


def face_asset(container: Any, owner_id: str) -> str:
    """A portrait with a real face (the astronaut photo that ships with scikit-image), stored as the owner's."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return str(container.assets.store_output(owner_id=owner_id, job_id=None, data=buf.getvalue(),
                                             content_type="image/png", filename="face.png").id)


def cast(container: Any, owner_id: str) -> list[dict[str, Any]]:
    pid = face_asset(container, owner_id)
    return [{"name": "Martha", "portrait_asset_id": pid, "voice": {"id": "warm-female"}},
            {"name": "John", "portrait_asset_id": pid, "voice": {"id": "deep-male", "rate": 1.1}}]


def wait_job(user: Any, job_id: str, timeout: float = 300) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = user.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in TERMINAL else None

    return dict(wait_for(done, timeout=timeout, interval=0.1))


def download(container: Any, owner_id: str, asset_id: str) -> bytes:
    _, data = container.assets.read_owned(owner_id, asset_id)
    return bytes(data)
