"""Information disclosure: what a signed-in user who is not an admin (or nobody at all) can learn of the server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings
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


# --- /metrics: admins and the configured scraper only ----------------------------------------------------------
SCRAPE_TOKEN = "scrape-" + "s" * 32


@pytest.fixture
def scraped(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    """A server with a scrape token configured (REELFORGE_METRICS__SCRAPE_TOKEN)."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, sqlite_url, metrics={"scrape_token": SCRAPE_TOKEN}))
    with TestClient(create_app(container=c)) as client:
        yield client
    c.close()


def problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and r.json()["code"] == code
    assert "reelforge_http_requests_total" not in r.text


def test_metrics_refuse_anonymous_callers_and_users(client: Any, alice: UserHandle) -> None:
    problem(client.get("/metrics"), 401, "missing_credentials")
    problem(client.get("/metrics", headers={"Authorization": "Bearer not-a-token"}), 401, "invalid_token")
    problem(alice.get("/metrics"), 403, "admin_only")


def test_metrics_answer_an_admin(client: Any, admin: UserHandle) -> None:
    r = admin.get("/metrics")
    assert r.status_code == 200 and "reelforge_http_requests_total" in r.text


def test_metrics_answer_the_scrape_token(scraped: Any) -> None:
    r = scraped.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert r.status_code == 200 and "reelforge_http_requests_total" in r.text
    problem(scraped.get("/metrics"), 401, "missing_credentials")
    problem(scraped.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN[:-1]}x"}), 401, "invalid_token")
    problem(scraped.get("/metrics", headers={"Authorization": f"Basic {SCRAPE_TOKEN}"}), 401, "missing_credentials")


def test_a_short_scrape_token_is_refused_at_start(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from reelforge.config import Settings

    with pytest.raises(ValidationError, match="scrape_token"):
        Settings(data_dir=tmp_path, metrics={"scrape_token": "short"})


# --- the generated admin password: on a terminal only, else in an owner-only file -------------------------------
@pytest.fixture
def fresh(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, sqlite_url))
    yield c
    c.close()


def saved_password(c: Any) -> str:
    path = c.settings.data_dir / "admin-password"
    assert path.stat().st_mode & 0o777 == 0o600
    password = path.read_text().strip()
    assert c.auth.login(c.settings.auth.admin_email, password).access_token
    return password


def test_admin_password_is_not_printed_when_stdout_is_not_a_terminal(
        fresh: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from reelforge.cli.main import _bootstrap

    with caplog.at_level("INFO"):
        _bootstrap(fresh)
    password = saved_password(fresh)
    out = capsys.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert password not in out.out + out.err + logged
    assert str(fresh.settings.data_dir / "admin-password") in logged
    # Only on first start: a second start says nothing and keeps the file.
    _bootstrap(fresh)
    assert saved_password(fresh) == password


def test_admin_password_is_shown_once_on_a_terminal(fresh: Any, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from reelforge.cli.main import _bootstrap

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _bootstrap(fresh)
    assert saved_password(fresh) in capsys.readouterr().out


def test_the_password_file_is_never_written_through_a_link(fresh: Any, tmp_path: Path) -> None:
    from reelforge.cli.main import _bootstrap

    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep\n")
    elsewhere.chmod(0o644)
    fresh.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (fresh.settings.data_dir / "admin-password").symlink_to(elsewhere)
    _bootstrap(fresh)
    assert elsewhere.read_text() == "keep\n"
    assert not (fresh.settings.data_dir / "admin-password").is_symlink()
    saved_password(fresh)


# --- /docs: Swagger UI from this server, never from a CDN --------------------------------------------------------
def test_docs_load_nothing_from_another_host(client: Any) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text) + re.findall(r"url: '([^']+)'", r.text)
    assert urls and not [u for u in urls if not u.startswith("/") or u.startswith("//")], urls
    assert "http://" not in r.text and "https://" not in r.text  # no CDN, no external favicon
    assets = [u for u in urls if u.endswith((".js", ".css"))]
    assert {u.rsplit("/", 1)[1] for u in assets} == {"swagger-ui-bundle.js", "swagger-ui.css"}
    for u in assets:
        got = client.get(u)
        assert got.status_code == 200 and len(got.content) > 10_000, u
        assert got.headers["content-type"].startswith("text/css" if u.endswith(".css") else "text/javascript"), u
    assert client.get(next(u for u in urls if u.endswith("openapi.json"))).status_code == 200


def test_docs_admit_only_their_own_script(client: Any) -> None:
    """The page shares the console's origin (where the access token is): a CSP that allows its one inline script
    by hash and scripts from this server, nothing else."""
    import base64
    import hashlib

    r = client.get("/docs")
    csp = r.headers["content-security-policy"]
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in csp and "unsafe-inline'; img" not in csp.split("script-src")[1][:80]
    assert "frame-ancestors 'none'" in csp and r.headers["x-content-type-options"] == "nosniff"
