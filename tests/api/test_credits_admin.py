"""/v1/credits (balance + ledger: reserve, settle, refund) and the admin routes (/v1/admin/credits, /users)."""

from __future__ import annotations

from typing import Any

from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"
IMAGE = {"kind": "image.generate", "input": {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2,
                                             "seed": 7, "num_images": 1, "model": "tiny-sd"}}


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def ledger(user: UserHandle) -> list[tuple[str, int, int, str | None]]:
    """Oldest first: (kind, amount, balance_after, job_id)."""
    rows = user.get("/v1/credits").json()["ledger"]
    return [(e["kind"], e["amount"], e["balance_after"], e["job_id"]) for e in reversed(rows)]


# --- credits -------------------------------------------------------------------------------------------
def test_starting_balance(client: Any, alice: UserHandle) -> None:
    body = alice.get("/v1/credits").json()
    assert body["balance"] == 100
    (entry,) = body["ledger"]
    assert entry["kind"] == "grant" and entry["amount"] == 100 and entry["balance_after"] == 100
    assert entry["note"] == "starting grant" and entry["created_at"].endswith("Z")
    assert alice.get("/v1/auth/me").json()["credits"] == 100


def test_job_reserves_then_settles(client: Any, alice: UserHandle, worker: Any) -> None:
    r = alice.post("/v1/jobs", json=IMAGE, params={"wait": 60})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded" and job["credits"] == 1 and job["credits_state"] == "settled"
    assert alice.get("/v1/credits").json()["balance"] == 99
    assert ledger(alice) == [("grant", 100, 100, None), ("reserve", -1, 99, job["id"]), ("settle", 0, 99, job["id"])]
    # The image path really produced a PNG the owner can fetch.
    asset = alice.get(f"/v1/assets/{job['outputs']['images'][0]['asset_id']}").json()
    assert asset["content_type"] == "image/png" and asset["job_id"] == job["id"]
    assert job["outputs"]["test_model"] is True


def test_cancel_refunds(client: Any, alice: UserHandle) -> None:
    job = alice.post("/v1/jobs", json=IMAGE).json()
    assert job["credits"] == 1 and job["credits_state"] == "reserved"
    assert alice.get("/v1/credits").json()["balance"] == 99
    cancelled = alice.post(f"/v1/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["credits_state"] == "refunded"
    assert alice.get("/v1/credits").json()["balance"] == 100
    assert ledger(alice) == [("grant", 100, 100, None), ("reserve", -1, 99, job["id"]),
                             ("refund", 1, 100, job["id"])]


def test_price_scales_with_work(client: Any, alice: UserHandle) -> None:
    big = {**IMAGE, "input": {**IMAGE["input"], "width": 512, "height": 512, "steps": 50, "num_images": 3}}
    job = alice.post("/v1/jobs", json=big).json()
    assert job["credits"] == 6  # 2 units of work per image, 3 images
    assert alice.get("/v1/credits").json()["balance"] == 94
    assert alice.post("/v1/jobs", json={"kind": "system.noop"}).json()["credits"] == 0
    assert alice.get("/v1/credits").json()["balance"] == 94


def test_ledger_pagination(client: Any, alice: UserHandle) -> None:
    for _ in range(3):
        alice.post("/v1/jobs", json=IMAGE)
    rows = alice.get("/v1/credits").json()["ledger"]
    assert len(rows) == 4 and [e["id"] for e in rows] == sorted((e["id"] for e in rows), reverse=True)
    page = alice.get("/v1/credits", params={"limit": 2}).json()["ledger"]
    assert page == rows[:2]
    rest = alice.get("/v1/credits", params={"limit": 2, "before": page[-1]["id"]}).json()["ledger"]
    assert rest == rows[2:]
    for params in [{"limit": 0}, {"limit": 501}, {"before": 0}]:
        assert_problem(alice.get("/v1/credits", params=params), 422, "validation_error")


# --- admin: credits ----------------------------------------------------------------------------------------
def test_admin_grant(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    r = admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": 50, "note": "support ticket 7"})
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["kind"] == "grant" and entry["amount"] == 50 and entry["balance_after"] == 150
    assert entry["note"] == "support ticket 7"
    assert alice.get("/v1/credits").json()["balance"] == 150
    # A negative grant takes credits away, but never below zero.
    r = admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": -140})
    assert r.status_code == 201 and r.json()["balance_after"] == 10
    assert r.json()["note"] == "granted by root@example.com"
    assert_problem(admin.post("/v1/admin/credits", json={"account_id": alice.id, "amount": -11}), 402,
                   "insufficient_credits")
    assert alice.get("/v1/credits").json()["balance"] == 10


def test_admin_grant_validation(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    assert_problem(admin.post("/v1/admin/credits", json={"account_id": "nobody", "amount": 5}), 404,
                   "user_not_found")
    for body in [{"account_id": alice.id, "amount": 0}, {"account_id": alice.id, "amount": 10**10},
                 {"account_id": alice.id}, {"account_id": "", "amount": 1},
                 {"account_id": alice.id, "amount": 1, "kind": "refund"}, {"account_id": alice.id, "amount": "lots"}]:
        assert_problem(admin.post("/v1/admin/credits", json=body), 422, "validation_error")
    assert alice.get("/v1/credits").json()["balance"] == 100


def test_admin_routes_refuse_users_and_anonymous(client: Any, alice: UserHandle) -> None:
    for method, path, body in [("POST", "/v1/admin/credits", {"account_id": alice.id, "amount": 1000}),
                               ("GET", "/v1/admin/users", None),
                               ("PATCH", f"/v1/admin/users/{alice.id}", {"role": "admin"})]:
        assert_problem(client.request(method, path, json=body, headers=alice.headers), 403, "admin_only")
        assert_problem(client.request(method, path, json=body), 401, "missing_credentials")
    # Nothing happened.
    me = alice.get("/v1/auth/me").json()
    assert me["role"] == "user" and me["credits"] == 100


# --- admin: users ---------------------------------------------------------------------------------------------
def test_admin_lists_users(client: Any, alice: UserHandle, bob: UserHandle, admin: UserHandle) -> None:
    users = admin.get("/v1/admin/users").json()["data"]
    by_email = {u["email"]: u for u in users}
    assert {"alice@example.com", "bob@example.com", "root@example.com"} <= set(by_email)
    assert by_email["root@example.com"]["role"] == "admin" and by_email["alice@example.com"]["role"] == "user"
    assert all("password" not in str(u) and "secret" not in str(u) for u in users)
    page = admin.get("/v1/admin/users", params={"limit": 1}).json()["data"]
    nxt = admin.get("/v1/admin/users", params={"limit": 1, "offset": 1}).json()["data"]
    assert len(page) == 1 and len(nxt) == 1 and page[0]["id"] != nxt[0]["id"]
    assert_problem(admin.get("/v1/admin/users", params={"offset": -1}), 422, "validation_error")


def test_disable_user(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    key = alice.post("/v1/api-keys", json={"name": "k"}).json()["key"]
    pair = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()

    r = admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    # Every credential stops working at once.
    assert_problem(alice.get("/v1/auth/me"), 401, "invalid_token")
    assert_problem(client.get("/v1/auth/me", headers={"Authorization": f"Bearer {key}"}), 401, "account_disabled")
    assert_problem(client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}), 401,
                   "account_disabled")
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401,
                   "invalid_refresh_token")

    r = admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": False})
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert alice.get("/v1/auth/me").status_code == 200
    assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_promote_and_demote(client: Any, alice: UserHandle, bob: UserHandle, admin: UserHandle) -> None:
    assert admin.patch(f"/v1/admin/users/{bob.id}", json={"role": "admin"}).json()["role"] == "admin"
    # The role is read from the database on every request: bob's existing token now has admin rights.
    assert bob.get("/v1/admin/users").status_code == 200
    assert admin.patch(f"/v1/admin/users/{bob.id}", json={"role": "user"}).json()["role"] == "user"
    assert_problem(bob.get("/v1/admin/users"), 403, "admin_only")


def test_update_user_validation(client: Any, alice: UserHandle, admin: UserHandle) -> None:
    assert_problem(admin.patch("/v1/admin/users/nobody", json={"disabled": True}), 404, "user_not_found")
    for body in [{"role": "superuser"}, {"disabled": "maybe"}, {"credits": 10}, {"email": "x@example.com"}]:
        assert_problem(admin.patch(f"/v1/admin/users/{alice.id}", json=body), 422, "validation_error")
    # An empty patch changes nothing.
    r = admin.patch(f"/v1/admin/users/{alice.id}", json={})
    assert r.status_code == 200 and r.json()["role"] == "user" and r.json()["disabled"] is False


def test_credits_requires_auth(client: Any) -> None:
    assert_problem(client.get("/v1/credits"), 401, "missing_credentials")
