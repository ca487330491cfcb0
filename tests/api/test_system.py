"""System routes: /healthz /readyz /metrics /openapi.json, plus the generic 404/405 and request ids."""

from __future__ import annotations

from typing import Any

from tests.conftest import UserHandle

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["type"].endswith(code) and body["title"] and "detail" in body
    return body


def test_healthz(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["version"]


def test_readyz_ok(client: Any) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"},
                        "workers": {"live": 0, "lost": 0}}


def test_readyz_needs_a_live_worker_only_where_the_process_supervises_workers(
        client: Any, container: Any, monkeypatch: Any) -> None:
    from types import SimpleNamespace

    from sqlalchemy import update

    from reelforge.adapters.db import models as m

    # A worker killed with SIGKILL: registered "running", heartbeat long gone.
    with container.store.tx() as tx:
        tx.ops.worker_heartbeat("host:1:a", hostname="host", pid=1, concurrency=1)
        tx.s.execute(update(m.Worker).values(heartbeat_at=tx.now() - container.stats.lost_after_s - 60))
    # An API on its own: ready whatever the workers do, and says what it sees.
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["workers"] == {"live": 0, "lost": 1}
    # `reelforge run --workers 1`: not ready while no live worker is registered...
    monkeypatch.setattr(container, "supervisor", SimpleNamespace(expected=1))
    body = assert_problem(client.get("/readyz"), 503, "not_ready")
    assert body["checks"]["workers"] == "error: no live worker"
    assert body["workers"] == {"live": 0, "lost": 1, "expected": 1}
    # ...and ready again once one heartbeats.
    with container.store.tx() as tx:
        tx.ops.worker_heartbeat("host:2:b", hostname="host", pid=2, concurrency=1)
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["workers"] == "ok" and r.json()["workers"]["live"] == 1


def test_readyz_not_ready_when_storage_fails(client: Any, container: Any, monkeypatch: Any) -> None:
    def broken() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(container.objects, "ping", broken)
    body = assert_problem(client.get("/readyz"), 503, "not_ready")
    assert body["checks"] == {"database": "ok", "storage": "error: OSError"}


def test_metrics_prometheus_text(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    alice.get("/v1/auth/me")
    r = admin.get("/metrics")  # admins only (or the scrape token): tests/security/test_disclosure.py
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "reelforge_http_requests_total" in text
    assert "reelforge_http_request_duration_seconds" in text
    # Routes are labelled by template, not by raw path (bounded label cardinality).
    assert 'route="/v1/auth/me"' in text
    assert "reelforge_queue_depth" in text


def test_metrics_labels_stay_bounded(client: Any, alice: UserHandle, admin: UserHandle, settings: Any) -> None:
    """Raw paths never become labels: whatever a client sends, the series count stays fixed."""
    for i in range(3):
        client.get(f"/no/such/path/{i}")  # 404
        alice.put(f"/v1/jobs/random-{i}")  # 405
        client.post(f"/v1/whatever-{i}", content=b"x" * (settings.max_body_bytes + 1))  # 413 before routing
        client.get(f"/v1/jobs/nul-{i}%00")  # 400 before routing
    text = admin.get("/metrics").text
    assert "/no/such/path" not in text and "random-" not in text and "whatever-" not in text and "nul-" not in text
    assert 'route="unmatched"' in text
    assert 'route="/v1/jobs/{job_id}"' in text or 'status="405"' in text


def test_openapi_lists_every_public_route(client: Any) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in ["/healthz", "/readyz", "/metrics", "/v1/auth/register", "/v1/auth/token", "/v1/auth/refresh",
              "/v1/auth/me", "/v1/api-keys", "/v1/api-keys/{key_id}", "/v1/jobs", "/v1/jobs/{job_id}",
              "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/history", "/v1/jobs/{job_id}/events",
              "/v1/pipelines", "/v1/pipelines/{kind}", "/v1/models", "/v1/uploads", "/v1/uploads/{upload_id}",
              "/v1/uploads/{upload_id}/complete", "/v1/uploads/{upload_id}/abort", "/v1/assets",
              "/v1/assets/{asset_id}", "/v1/credits", "/v1/admin/credits", "/v1/admin/users",
              "/v1/admin/users/{user_id}", "/v1/webhooks", "/v1/webhooks/signing-secret",
              "/v1/webhooks/{hook_id}", "/v1/webhooks/{hook_id}/test", "/v1/webhooks/{hook_id}/deliveries"]:
        assert p in paths, p
    # The signed-URL endpoints of the local store are not part of the public contract.
    assert not any(p.startswith("/v1/storage") for p in paths)


def test_unknown_route_is_problem_404(client: Any) -> None:
    assert_problem(client.get("/v1/nope"), 404, "not_found")


def test_wrong_method_is_problem_405(client: Any, alice: UserHandle) -> None:
    assert_problem(alice.put("/v1/jobs", json={}), 405, "method_not_allowed")


def test_request_id_echoed_or_generated(client: Any) -> None:
    r = client.get("/healthz", headers={"X-Request-Id": "abc-123_def"})
    assert r.headers["x-request-id"] == "abc-123_def"
    r = client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces<script>"})
    rid = r.headers["x-request-id"]
    assert rid != "bad id\twith spaces<script>" and rid.isalnum()
    r = client.get("/v1/nope")
    assert r.headers["x-request-id"]


def test_console_index(client: Any) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]


def test_timestamps_have_one_format() -> None:
    from reelforge.api.schemas.common import iso

    # A whole second used to lose its fraction ("...:50Z" vs "...:50.500000Z"), breaking fixed-format parsers
    # and string ordering.
    assert iso(1795316210.0) == "2026-11-22T02:56:50.000000Z"
    assert len(iso(1795316210.0) or "") == len(iso(1795316210.25) or "")
    assert iso(None) is None


def test_docs_page(client: Any) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]


def test_unexpected_error_is_problem_500_without_internals(app: Any, container: Any, alice: UserHandle,
                                                           monkeypatch: Any) -> None:
    from fastapi.testclient import TestClient

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(container.credits, "balance", boom)
    with TestClient(app, raise_server_exceptions=False) as tc:
        r = tc.get("/v1/credits", headers=alice.headers)
    body = assert_problem(r, 500, "internal_error")
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert body["instance"] == "/v1/credits" and r.headers["x-request-id"]
