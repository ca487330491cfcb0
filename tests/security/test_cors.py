"""CORS: only the origins in `cors.allow_origins` get CORS headers; preflights are answered; none by default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, register
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

APP = "https://app.example.com"
EVIL = "https://evil.example.net"


@pytest.fixture
def make_client(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Any]]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    opened: list[tuple[Any, Any]] = []

    def build(**overrides: Any) -> Any:
        c = Container(make_settings(tmp_path / str(len(opened)), db_url, **overrides))
        tc = TestClient(create_app(container=c))
        tc.__enter__()
        opened.append((tc, c))
        return tc

    yield build
    for tc, c in opened:
        tc.__exit__(None, None, None)
        c.close()


def cors_headers(r: Any) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def preflight(client: Any, origin: str, method: str = "POST", path: str = "/v1/jobs") -> Any:
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": "authorization, content-type, "
                                                                           "idempotency-key"})


def test_allowed_origin_gets_cors_headers(make_client: Any) -> None:
    client = make_client(cors={"allow_origins": [APP, "http://localhost:5173"]})
    user = register(client, "cors@example.com")
    r = preflight(client, APP)
    assert r.status_code == 204, r.text
    h = cors_headers(r)
    assert h["access-control-allow-origin"] == APP
    assert "POST" in h["access-control-allow-methods"] and "DELETE" in h["access-control-allow-methods"]
    allowed = {x.strip().lower() for x in h["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "if-none-match"} <= allowed
    assert int(h["access-control-max-age"]) == 600
    assert "access-control-allow-credentials" not in h  # not configured: bearer tokens need none
    assert "origin" in r.headers["vary"].lower()
    # The actual request: the origin is echoed and the headers a client needs are exposed.
    r = client.post("/v1/jobs", json={"kind": "system.noop"}, headers={**user.headers, "Origin": APP})
    assert r.status_code == 202
    h = cors_headers(r)
    assert h["access-control-allow-origin"] == APP
    exposed = {x.strip().lower() for x in h["access-control-expose-headers"].split(",")}
    assert {"location", "etag", "retry-after", "ratelimit-remaining", "x-request-id"} <= exposed
    assert r.headers["location"].startswith("/v1/jobs/") and "origin" in r.headers["vary"].lower()
    # Errors carry them too (a page must be able to read the problem document).
    r = client.get("/v1/jobs/nope", headers={**user.headers, "Origin": "http://localhost:5173"})
    assert r.status_code == 404 and cors_headers(r)["access-control-allow-origin"] == "http://localhost:5173"


def test_disallowed_origin_gets_no_cors_headers(make_client: Any) -> None:
    client = make_client(cors={"allow_origins": [APP]})
    user = register(client, "cors@example.com")
    for origin in (EVIL, APP + ".evil.example.net", "null", APP.replace("https", "http")):
        r = preflight(client, origin)
        assert cors_headers(r) == {}, (origin, r.headers)
        assert r.status_code != 204
        r = user.get("/v1/jobs", headers={"Origin": origin})
        assert r.status_code == 200 and cors_headers(r) == {}


def test_no_cors_by_default(client: Any) -> None:
    assert client.app.state.container.settings.cors.allow_origins == []
    r = preflight(client, APP)
    assert cors_headers(r) == {} and r.status_code != 204
    assert cors_headers(client.get("/v1/jobs", headers={"Origin": APP})) == {}


def test_rate_limited_answers_are_readable_cross_origin(make_client: Any) -> None:
    client = make_client(cors={"allow_origins": [APP]}, rate_limit={"writes_per_window_ip": 1, "window_s": 60})
    assert client.post("/v1/jobs", json={}, headers={"Origin": APP}).status_code == 401
    r = client.post("/v1/jobs", json={}, headers={"Origin": APP})
    assert r.status_code == 429 and cors_headers(r)["access-control-allow-origin"] == APP
    assert "retry-after" in cors_headers(r)["access-control-expose-headers"].lower()


def test_credentials_and_wildcard(make_client: Any) -> None:
    from pydantic import ValidationError

    from reelforge.config import CorsSettings

    with pytest.raises(ValidationError):
        CorsSettings(allow_origins=["*"], allow_credentials=True)
    with pytest.raises(ValidationError):
        CorsSettings(allow_origins=["app.example.com"])  # not an origin
    with pytest.raises(ValidationError):
        CorsSettings(allow_origins=[APP + "/"])
    client = make_client(cors={"allow_origins": [APP], "allow_credentials": True, "max_age_s": 60})
    h = cors_headers(preflight(client, APP))
    assert h["access-control-allow-credentials"] == "true" and h["access-control-max-age"] == "60"
    assert h["access-control-allow-origin"] == APP
    anyone = make_client(cors={"allow_origins": ["*"]})
    assert cors_headers(preflight(anyone, EVIL))["access-control-allow-origin"] == "*"


def test_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from reelforge.config import Settings

    monkeypatch.setenv("REELFORGE_CORS__ALLOW_ORIGINS", f'["{APP}", "http://localhost:3000"]')
    assert Settings().cors.allow_origins == [APP, "http://localhost:3000"]
