"""Limits: write rate limits (429 + Retry-After), body size (413), credits (402), strict request models,
values the databases cannot store, and no junk input ever answering 500."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UserHandle, make_settings, register
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"
NOOP = {"kind": "system.noop", "input": {}}


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


@pytest.fixture
def make_client(tmp_path: Path, db_url: str) -> Iterator[Callable[..., Any]]:
    """A TestClient on a container built with these settings overrides (one per test)."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    opened: list[tuple[Any, Any]] = []

    def build(**overrides: Any) -> Any:
        c = Container(make_settings(tmp_path, db_url, **overrides))
        tc = TestClient(create_app(container=c))
        tc.__enter__()
        opened.append((tc, c))
        return tc

    yield build
    for tc, c in opened:
        tc.__exit__(None, None, None)
        c.close()


# --- rate limits ------------------------------------------------------------------------------------
def test_per_ip_write_limit(make_client: Any) -> None:
    client = make_client(rate_limit={"writes_per_window_ip": 5, "window_s": 60})
    user = register(client, "limited@example.com")  # 2 writes: register + token
    up = user.post("/v1/uploads", json={"content_type": "text/plain", "size": 2}).json()  # 3
    assert user.post("/v1/jobs", json=NOOP).status_code == 202  # 4
    assert client.post("/v1/auth/token", json={"email": "x@example.com", "password": "nope nope"}).status_code == 401
    r = user.post("/v1/jobs", json=NOOP)  # 6th write from this address
    body = assert_problem(r, 429, "rate_limited")
    retry_after = int(r.headers["retry-after"])
    assert 1 <= retry_after <= 60 and str(retry_after) in body["detail"]
    # Unauthenticated writes are limited too, before anything else happens.
    assert_problem(client.post("/v1/auth/register", json={"email": "n@example.com", "password": "long enough"}),
                   429, "rate_limited")
    # Reads are not limited; nor are signed-URL transfers (they carry their own signature and size limit).
    assert user.get("/v1/jobs").status_code == 200
    assert client.get("/healthz").status_code == 200
    put = client.put(up["put"]["url"].removeprefix("http://testserver"), content=b"ok",
                     headers=up["put"]["headers"])
    assert put.status_code == 200


def test_per_account_write_limit(make_client: Any) -> None:
    client = make_client(rate_limit={"writes_per_window_ip": 1000, "writes_per_window_account": 3, "window_s": 60})
    alice = register(client, "alice@example.com")
    bob = register(client, "bob@example.com")
    for _ in range(3):
        assert alice.post("/v1/jobs", json=NOOP).status_code == 202
    r = alice.post("/v1/jobs", json=NOOP)
    assert_problem(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert_problem(alice.delete("/v1/api-keys/x"), 429, "rate_limited")
    assert len(alice.get("/v1/jobs").json()["data"]) == 3
    # Another account on the same address is unaffected.
    assert bob.post("/v1/jobs", json=NOOP).status_code == 202


def test_rate_limits_can_be_disabled(make_client: Any) -> None:
    client = make_client(rate_limit={"enabled": False, "writes_per_window_ip": 1, "writes_per_window_account": 1})
    user = register(client, "free@example.com")
    for _ in range(3):
        assert user.post("/v1/jobs", json=NOOP).status_code == 202


# --- body size ------------------------------------------------------------------------------------------
def test_body_over_limit_with_content_length(client: Any, alice: UserHandle, settings: Any) -> None:
    limit = settings.max_body_bytes
    big = {"kind": "system.noop", "input": {"echo": "x" * limit}}
    r = alice.post("/v1/jobs", json=big)
    body = assert_problem(r, 413, "payload_too_large")
    assert str(limit) in body["detail"]
    # Also before authentication: nobody gets to make the server read a huge body.
    assert_problem(client.post("/v1/auth/register", content=b"x" * (limit + 1),
                               headers={"Content-Type": "application/json"}), 413, "payload_too_large")
    assert alice.get("/v1/jobs").json()["data"] == []


def test_body_over_limit_streamed_without_content_length(client: Any, alice: UserHandle, settings: Any) -> None:
    limit = settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "system.noop", "input": {"echo": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}}'

    r = alice.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert_problem(r, 413, "payload_too_large")
    assert alice.get("/v1/jobs").json()["data"] == []


def test_body_just_under_limit_is_accepted(client: Any, alice: UserHandle, settings: Any) -> None:
    payload = b'{"kind": "system.noop", "input": {"echo": "'
    tail = b'"}}'
    filler = b"y" * (settings.max_body_bytes - len(payload) - len(tail))
    r = alice.post("/v1/jobs", content=payload + filler + tail, headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text[:300]


def test_signed_upload_is_not_bound_by_the_api_body_limit(client: Any, alice: UserHandle, settings: Any) -> None:
    data = b"z" * (settings.max_body_bytes + 1000)
    up = alice.post("/v1/uploads", json={"content_type": "application/octet-stream", "size": len(data)}).json()
    r = client.put(up["put"]["url"].removeprefix("http://testserver"), content=data, headers=up["put"]["headers"])
    assert r.status_code == 200, r.text
    assert alice.post(f"/v1/uploads/{up['id']}/complete", json={}).json()["size"] == len(data)


# --- credits ----------------------------------------------------------------------------------------------
def test_insufficient_credits(make_client: Any) -> None:
    client = make_client(credits={"starting_grant": 1})
    user = register(client, "poor@example.com")
    two = {"kind": "image.generate", "input": {"prompt": "two cats", "width": 64, "height": 64, "steps": 2,
                                               "num_images": 2, "model": "tiny-sd"}}
    body = assert_problem(user.post("/v1/jobs", json=two, headers={"Idempotency-Key": "k1"}), 402,
                          "insufficient_credits")
    assert body["needed"] == 2 and body["balance"] == 1
    assert user.get("/v1/jobs").json()["data"] == []
    credits = user.get("/v1/credits").json()
    assert credits["balance"] == 1 and [e["kind"] for e in credits["ledger"]] == ["grant"]
    # One image costs one credit: that fits, and then nothing more does.
    one = {**two, "input": {**two["input"], "num_images": 1}}
    assert user.post("/v1/jobs", json=one).status_code == 202
    assert user.get("/v1/credits").json()["balance"] == 0
    assert_problem(user.post("/v1/jobs", json=one), 402, "insufficient_credits")
    # Free jobs still run.
    assert user.post("/v1/jobs", json=NOOP).status_code == 202
    # The refused Idempotency-Key was not consumed.
    assert_problem(user.post("/v1/jobs", json=two, headers={"Idempotency-Key": "k1"}), 402, "insufficient_credits")


def test_free_jobs_per_account_are_limited(make_client: Any) -> None:
    client = make_client(jobs={"free_jobs_per_window": 5, "free_jobs_window_s": 600})
    alice = register(client, "alice@example.com")
    bob = register(client, "bob@example.com")

    def batch(user: UserHandle, n: int) -> Any:
        return user.post("/v1/jobs/batch", json={"jobs": [NOOP] * n})

    assert batch(alice, 3).status_code == 202
    r = batch(alice, 3)  # 6 > 5: the whole batch is refused
    body = assert_problem(r, 429, "free_jobs_limited")
    assert body["limit"] == 5 and 1 <= int(r.headers["retry-after"]) <= 600
    assert len(alice.get("/v1/jobs").json()["data"]) == 3
    assert alice.post("/v1/jobs", json=NOOP).status_code == 202
    assert alice.post("/v1/jobs", json=NOOP).status_code == 202
    assert_problem(alice.post("/v1/jobs", json=NOOP), 429, "free_jobs_limited")
    # Another account has its own quota; jobs that cost credits are not free jobs.
    assert batch(bob, 5).status_code == 202
    paid = {"kind": "image.generate", "input": {"prompt": "a cat", "width": 64, "height": 64, "steps": 2,
                                                "num_images": 1, "model": "tiny-sd"}}
    assert alice.post("/v1/jobs", json=paid).status_code == 202


def test_free_job_quota_counts_the_window(make_client: Any) -> None:
    client = make_client(jobs={"free_jobs_per_window": 2, "free_jobs_window_s": 600})
    alice = register(client, "alice@example.com")
    assert alice.post("/v1/jobs/batch", json={"jobs": [NOOP, NOOP]}).status_code == 202
    assert_problem(alice.post("/v1/jobs", json=NOOP), 429, "free_jobs_limited")
    # Jobs older than the window no longer count (moved back in time, as the database clock would age them).
    c = client.app.state.container
    with c.store.tx() as tx:
        for job in tx.jobs.jobs(owner_id=alice.id, limit=10):
            tx.jobs.update_job(job.id, created_at=job.created_at - 601)
    assert alice.post("/v1/jobs", json=NOOP).status_code == 202


# --- request models ---------------------------------------------------------------------------------------
def test_every_request_model_forbids_unknown_fields(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    up = alice.post("/v1/uploads", json={"content_type": "text/plain", "size": 3}).json()
    for user, method, path, body in [
        (None, "POST", "/v1/auth/register", {"email": "n@example.com", "password": "long enough pw"}),
        (None, "POST", "/v1/auth/token", {"email": alice.email, "password": alice.password}),
        (None, "POST", "/v1/auth/refresh", {"refresh_token": "rft_x"}),
        (alice, "POST", "/v1/api-keys", {"name": "k"}),
        (alice, "POST", "/v1/jobs", {"kind": "system.noop", "input": {}}),
        (alice, "POST", "/v1/uploads", {"content_type": "text/plain", "size": 3}),
        (alice, "POST", f"/v1/uploads/{up['id']}/complete", {}),
        (alice, "POST", f"/v1/uploads/{up['id']}/complete", {"parts": [{"part_number": 1, "etag": "e"}]}),
        (alice, "POST", "/v1/webhooks", {"url": "https://hooks.example.invalid/x"}),
        (admin, "POST", "/v1/admin/credits", {"account_id": alice.id, "amount": 5}),
        (admin, "PATCH", f"/v1/admin/users/{alice.id}", {"disabled": False}),
    ]:
        headers = user.headers if user else {}
        extra: dict[str, Any] = {**body, "unexpected": 1}
        if "parts" in body:
            extra = {"parts": [{**body["parts"][0], "unexpected": 1}]}
        r = client.request(method, path, json=extra, headers=headers)
        err = assert_problem(r, 422, "validation_error")
        assert any(e["type"] == "extra_forbidden" for e in err["errors"]), (path, err)
    # Nothing above changed anything.
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == 100


def test_values_the_databases_cannot_store(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    """NUL, lone surrogates and non-finite numbers are refused at the edge (PostgreSQL cannot store them)."""
    for path, raw in [
        ("/v1/jobs", '{"kind": "system.noop", "input": {"echo": "a\\u0000b"}}'),
        ("/v1/jobs", '{"kind": "system.noop", "input": {"echo": {"k\\u0000": 1}}}'),
        ("/v1/jobs", '{"kind": "system.noop", "input": {"echo": ["\\ud800"]}}'),
        ("/v1/jobs", '{"kind": "system.noop", "input": {"echo": NaN}}'),
        ("/v1/jobs", '{"kind": "system.noop", "input": {"echo": -Infinity}}'),
        ("/v1/jobs", '{"kind": "system.noop", "input": {"echo": 1e400}}'),
        ("/v1/jobs", '{"kind": "image.generate", "input": {"prompt": "a\\u0000", "model": "tiny-sd"}}'),
        ("/v1/api-keys", '{"name": "a\\u0000b"}'),
        ("/v1/auth/register", '{"email": "a\\u0000b@example.com", "password": "long enough pw"}'),
        ("/v1/auth/token", '{"email": "a\\u0000b@example.com", "password": "long enough pw"}'),
        ("/v1/uploads", '{"content_type": "text/plain", "size": 3, "filename": "a\\u0000.txt"}'),
        ("/v1/webhooks", '{"url": "https://example.invalid/\\u0000"}'),
    ]:
        r = client.post(path, content=raw, headers={**alice.headers, "Content-Type": "application/json"})
        assert_problem(r, 422, "validation_error")
    for path in ["/v1/jobs/a%00b", "/v1/jobs?kind=a%00b", "/v1/assets/%00", "/v1/webhooks/x%00/deliveries"]:
        assert_problem(alice.get(path), 400, "invalid_url")
    assert alice.get("/v1/jobs").json()["data"] == []
    # Query numbers beyond what an id column holds (they used to overflow the driver: 500).
    huge = str(10**20)
    job_id = alice.post("/v1/jobs", json={"kind": "system.noop"}).json()["id"]
    for path, params in [("/v1/credits", {"before": huge}), (f"/v1/jobs/{job_id}/history", {"after": huge}),
                         ("/v1/credits", {"before": str(2**31)})]:
        assert_problem(alice.get(path, params=params), 422, "validation_error")
    assert alice.get("/v1/credits", params={"before": str(2**31 - 1)}).status_code == 200
    # Large but finite numbers are fine.
    assert_problem(admin.get("/v1/admin/users", params={"offset": huge}), 422, "validation_error")
    big = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": 10**30}})
    assert big.status_code == 202 and big.json()["input"]["echo"] == 10**30


JUNK: list[tuple[bytes, str]] = [
    (b"[]", "application/json"),
    (b'"text"', "application/json"),
    (b"null", "application/json"),
    (b"{", "application/json"),
    (b'{"a": ' * 200 + b"1" + b"}" * 200, "application/json"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b'{"kind": 1, "input": 2, "url": 3, "email": 4, "size": "x", "amount": 1e999, "parts": 5}', "application/json"),
    (b'{"size": 99999999999999999999999, "amount": -99999999999999999999, "priority": 1e300}', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"email=a&password=b", "application/x-www-form-urlencoded"),
    (b"plain words", "text/plain"),
]

QUERY_JUNK: list[dict[str, str]] = [
    {"limit": "-1", "cursor": "\u202e", "status": "x"},
    # Each valid on its own (so the handler runs), at the edge of what the columns hold.
    {"before": str(10**20), "after": str(10**20), "offset": str(10**20), "timeout": "1"},
    {"cursor": "1e999:zzz", "limit": "1"},
]


def unconfigured(r: Any) -> bool:
    """A deliberate 503 of a feature this server is not configured for (an external service without its
    settings): the answer of a route that works, not a failure."""
    return r.status_code == 503 and str(r.json().get("code", "")).endswith("_not_configured")


def test_no_route_answers_500_to_junk(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    """Every operation in the OpenAPI document, as alice and as the admin, with malformed bodies and ids."""
    paths = client.get("/openapi.json").json()["paths"]
    tried = 0
    for path, ops in paths.items():
        url = path
        for name in ["job_id", "upload_id", "asset_id", "key_id", "hook_id", "user_id", "kind", "video_id", "mob_id",
                     "session_id", "prompt_id", "object_id", "frame", "project_id", "share_id", "voice_id",
                     "purchase_id"]:
            url = url.replace("{" + name + "}", "..%2F%E2%80%AE%ff" if name != "user_id" else alice.id)
        assert "{" not in url, path
        for method in ops:
            for user in (alice, admin):
                writes = method in ("post", "patch", "put")
                bodies = JUNK if writes else [(b"", "text/plain")]
                for (raw, ctype), params in itertools.product(bodies, QUERY_JUNK[:1] if writes else QUERY_JUNK):
                    r = client.request(method.upper(), url, content=raw,
                                       headers={**user.headers, "Content-Type": ctype}, params=params)
                    tried += 1
                    assert r.status_code < 500 or unconfigured(r), (method, url, raw[:40], r.status_code,
                                                                     r.text[:300])
                    if r.status_code >= 400:
                        assert r.headers["content-type"].startswith(PROBLEM), (method, url, r.headers)
                        assert r.json()["code"], (method, url)
    assert tried > 100
