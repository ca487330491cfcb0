"""Information disclosure: what a signed-in user who is not an admin (or nobody at all) can learn of the server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

# An absolute file-system path anywhere in a string: /x/y, ~/x, C:\x (URLs and "MACs/pixel" are not paths).
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])(?:~?/|[A-Za-z]:[\\/])[^\s'\"`,;()<>]+")


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)] + [k for k in value if isinstance(k, str)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


# --- /v1/models: local paths only for admins --------------------------------------------------------------------
def test_models_show_no_server_path_to_users(client: Any, alice: UserHandle, settings: Any) -> None:
    r = alice.get("/v1/models")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data, "no models registered"
    leaked = [s for s in strings(data) if ABSOLUTE_PATH.search(s)]
    assert not leaked, leaked[:5]
    for where in (str(settings.data_dir), str(Path.home())):
        assert where not in r.text
    by_name = {(m["task"], m["name"]): m for m in data}
    tiny = by_name[("image.generate", "tiny-sd")]
    assert "dir" not in tiny["details"] and tiny["details"]["default_width"] == 64  # the rest stays
    sd15 = by_name[("image.generate", "sd15")]
    assert sd15["available"] is False and "reelforge models pull" in sd15["reason"]  # still says what to do


def test_admins_see_the_local_paths(client: Any, admin: UserHandle, alice: UserHandle) -> None:
    data = admin.get("/v1/models").json()["data"]
    tiny = next(m for m in data if m["name"] == "tiny-sd")
    assert Path(tiny["details"]["dir"]).is_absolute()
    sd15 = next(m for m in data if m["name"] == "sd15")
    assert ABSOLUTE_PATH.search(sd15["reason"])
    assert len(data) == len(alice.get("/v1/models").json()["data"])  # the same models, less the paths


def test_path_hiding_keeps_what_is_not_a_path() -> None:
    from reelforge.api.convert import hide_paths

    kept = ["1 credit / 1000 px", "120 GFLOP/s", "https://huggingface.co/x/y", "stabilityai/sd-turbo", "a/b"]
    for text in kept:
        assert hide_paths(text) == text
    assert hide_paths("weights not present in /srv/models/sd15; run x") == "weights not present in <local path>; run x"
    assert hide_paths({"dir": "/srv/m", "nested": {"file": "C:\\m\\w.bin", "n": 3}, "list": ["~/w", "ok"]}) == \
        {"nested": {"n": 3}, "list": ["ok"]}
    assert json.dumps(hide_paths({"why": "see /etc/x and /var/y"})) == '{"why": "see <local path> and <local path>"}'
