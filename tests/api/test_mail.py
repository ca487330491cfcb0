"""E-mail flows through the API, sent to a real SMTP server (aiosmtpd, STARTTLS + AUTH): verification, password
reset, sessions, the account's mail settings, notices from outbox events, and the queue's retries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.conftest import UserHandle, make_settings, register, wait_for
from tests.fixtures.smtp import SmtpServer

PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["code"] == code, body
    return body


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    server.up()
    yield server
    server.down()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, smtp: SmtpServer) -> Any:
    return make_settings(tmp_path, db_url, mail={**smtp.settings(), "forgot_min_response_s": 0,
                                                 "retry_base_s": 30})


def link_token(msg: Any) -> str:
    text = msg.get_body(preferencelist=("plain",)).get_content()
    found = re.search(r"#token=([A-Za-z0-9_%.\-]+)", text)
    assert found, text
    return unquote(found.group(1))


def send(container: Any) -> int:
    return int(container.mail.send_due())


def mails_of(container: Any, **kw: Any) -> list[Any]:
    with container.store.tx(write=False) as tx:
        return list(tx.mail.mails(**kw))


# --- verification ------------------------------------------------------------------------------------------------
def test_registration_mails_a_link_that_verifies_once(client: Any, container: Any, smtp: SmtpServer) -> None:
    alice = register(client, "alice@example.com")
    assert alice.get("/v1/account/mail").json()["verified"] is False
    assert send(container) == 1
    [msg] = smtp.to("alice@example.com")
    assert msg["Subject"].startswith("Confirm your e-mail address")
    assert msg["From"] == "Reelforge <noreply@reelforge.test>"
    assert msg.get_body(preferencelist=("html",)) is not None
    assert smtp.logins == ["mailer"] and smtp.tls_sessions == 1  # STARTTLS, then AUTH
    token = link_token(msg)
    assert token.startswith("rfv_") and "http://testserver/account/verify#token=" in msg.get_body(
        preferencelist=("plain",)).get_content()
    r = client.post("/v1/auth/verify", json={"token": token})
    assert r.status_code == 200 and r.json() == {"status": "verified", "email": "alice@example.com"}
    state = alice.get("/v1/account/mail").json()
    assert state["verified"] is True and state["verified_at"]
    # Single use.
    assert_problem(client.post("/v1/auth/verify", json={"token": token}), 400, "invalid_mail_token")
    # Verified: no new link.
    assert_problem(alice.post("/v1/auth/verify/resend"), 409, "already_verified")
    [sent] = mails_of(container, user_id=alice.id)
    assert sent.status == "sent" and sent.body == "" and sent.provider == "smtp"


def test_resend_is_throttled_and_an_old_link_still_verifies(client: Any, container: Any, smtp: SmtpServer) -> None:
    alice = register(client, "alice@example.com")
    assert_problem(alice.post("/v1/auth/verify/resend"), 429, "mail_throttled")  # the registration's link is new
    with container.store.tx() as tx:
        tx.s.execute(__import__("sqlalchemy").text("UPDATE link_tokens SET created_at = created_at - 120"))
    assert alice.post("/v1/auth/verify/resend").status_code == 202
    send(container)
    first, second = smtp.to("alice@example.com")
    assert link_token(first) != link_token(second)
    assert client.post("/v1/auth/verify", json={"token": link_token(first)}).status_code == 200
    # Using one link spends the others.
    assert_problem(client.post("/v1/auth/verify", json={"token": link_token(second)}), 400, "invalid_mail_token")


def test_a_verification_holds_only_for_the_verified_address(client: Any, container: Any, smtp: SmtpServer) -> None:
    alice = register(client, "alice@example.com")
    send(container)
    token = link_token(smtp.to("alice@example.com")[0])
    with container.store.tx() as tx:
        tx.accounts.update_user(alice.id, email="alice2@example.com")
    # The link was for the old address.
    assert_problem(client.post("/v1/auth/verify", json={"token": token}), 400, "invalid_mail_token")
    assert alice.get("/v1/account/mail").json()["verified"] is False


def test_verify_bad_input(client: Any, alice: UserHandle) -> None:
    assert_problem(client.post("/v1/auth/verify", json={}), 422, "validation_error")
    assert_problem(client.post("/v1/auth/verify", json={"token": ""}), 422, "validation_error")
    assert_problem(client.post("/v1/auth/verify", json={"token": "x" * 300}), 422, "validation_error")
    assert_problem(client.post("/v1/auth/verify", json={"token": "rfv_nope", "extra": 1}), 422, "validation_error")
    assert_problem(client.post("/v1/auth/verify", json={"token": "rfv_forged"}), 400, "invalid_mail_token")
    assert_problem(alice.post("/v1/auth/verify/resend", json={"x": 1}), 429, "mail_throttled")  # no body taken


# --- password reset ---------------------------------------------------------------------------------------------
def test_password_reset_ends_every_session(client: Any, container: Any, smtp: SmtpServer) -> None:
    alice = register(client, "alice@example.com")
    other = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    assert client.post("/v1/auth/password/forgot", json={"email": " Alice@Example.com "}).json() == {
        "status": "accepted"}
    send(container)
    reset = [m for m in smtp.to("alice@example.com") if "Reset" in m["Subject"]]
    token = link_token(reset[0])
    assert token.startswith("rfr_")
    # A reset link is no verification link, and the reverse.
    assert_problem(client.post("/v1/auth/verify", json={"token": token}), 400, "invalid_mail_token")
    assert_problem(client.post("/v1/auth/password/reset", json={"token": token, "new_password": "password"}),
                   422, "password_too_common")
    r = client.post("/v1/auth/password/reset", json={"token": token, "new_password": "a brand new secret"})
    assert r.status_code == 204, r.text
    # Every session is over: access tokens (they name their session) and refresh tokens.
    assert_problem(alice.get("/v1/auth/me"), 401, "session_revoked")
    assert_problem(client.get("/v1/auth/me", headers={"Authorization": f"Bearer {other['access_token']}"}),
                   401, "session_revoked")
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}), 401,
                   "invalid_refresh_token")
    assert_problem(client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}), 401,
                   "invalid_credentials")
    fresh = client.post("/v1/auth/token", json={"email": alice.email, "password": "a brand new secret"})
    assert fresh.status_code == 200
    # Single use; the mailbox was proven; the owner is told.
    assert_problem(client.post("/v1/auth/password/reset", json={"token": token, "new_password": "another secret 2"}),
                   400, "invalid_mail_token")
    me = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert client.get("/v1/account/mail", headers=me).json()["verified"] is True
    send(container)
    assert any("password was changed" in m["Subject"] for m in smtp.to("alice@example.com"))


def test_an_expired_link_is_refused(client: Any, container: Any, smtp: SmtpServer) -> None:
    register(client, "alice@example.com")
    client.post("/v1/auth/password/forgot", json={"email": "alice@example.com"})
    send(container)
    verify_token = link_token(smtp.to("alice@example.com")[0])
    reset_token = link_token(smtp.to("alice@example.com")[1])
    with container.store.tx() as tx:
        tx.s.execute(__import__("sqlalchemy").text("UPDATE link_tokens SET expires_at = created_at - 1"))
    assert_problem(client.post("/v1/auth/verify", json={"token": verify_token}), 410, "mail_token_expired")
    assert_problem(client.post("/v1/auth/password/reset", json={"token": reset_token, "new_password": "new secret 12"}),
                   410, "mail_token_expired")


def test_forgot_for_unknown_or_disabled_accounts_sends_nothing(client: Any, container: Any, admin: UserHandle,
                                                               smtp: SmtpServer) -> None:
    alice = register(client, "alice@example.com")
    admin.patch(f"/v1/admin/users/{alice.id}", json={"disabled": True})
    for email in ("nobody@example.com", "alice@example.com"):
        r = client.post("/v1/auth/password/forgot", json={"email": email})
        assert r.status_code == 202 and r.json() == {"status": "accepted"}
    assert mails_of(container, kind="password_reset") == []
    assert_problem(client.post("/v1/auth/password/forgot", json={"email": "not an address"}), 422, "invalid_email")
    assert_problem(client.post("/v1/auth/password/forgot", json={}), 422, "validation_error")
    assert_problem(client.post("/v1/auth/password/reset", json={"token": "rfr_x", "new_password": "short"}), 422,
                   "validation_error")
    assert_problem(client.post("/v1/auth/password/reset", json={"token": "rfr_x", "new_password": "long enough 12"}),
                   400, "invalid_mail_token")


def test_forgot_sends_one_link_per_interval(client: Any, container: Any) -> None:
    register(client, "alice@example.com")
    for _ in range(3):
        assert client.post("/v1/auth/password/forgot", json={"email": "alice@example.com"}).status_code == 202
    assert len(mails_of(container, kind="password_reset")) == 1


# --- sessions and password change -------------------------------------------------------------------------------
def test_sessions_list_and_sign_out(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    second = client.post("/v1/auth/token", json={"email": alice.email, "password": alice.password}).json()
    other = {"Authorization": f"Bearer {second['access_token']}"}
    sessions = alice.get("/v1/auth/sessions").json()["data"]
    assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
    mine = next(s for s in sessions if s["current"])
    assert mine["started_at"] and mine["expires_at"] and mine["last_active_at"]
    # Another user's session is not found; a junk id neither.
    bob_session = bob.get("/v1/auth/sessions").json()["data"][0]["id"]
    assert_problem(alice.delete(f"/v1/auth/sessions/{bob_session}"), 404, "session_not_found")
    assert_problem(alice.delete("/v1/auth/sessions/" + "z" * 32), 404, "session_not_found")
    assert bob.get("/v1/auth/me").status_code == 200
    # Sign out the others: the second sign-in's access and refresh tokens stop; this one goes on.
    assert alice.post("/v1/auth/sessions/sign-out-others").json() == {"ended": 1}
    assert_problem(client.get("/v1/auth/me", headers=other), 401, "session_revoked")
    assert_problem(client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401,
                   "invalid_refresh_token")
    assert alice.get("/v1/auth/me").status_code == 200
    # Sign out one session by id (here: this one).
    assert alice.delete(f"/v1/auth/sessions/{mine['id']}").status_code == 204
    assert_problem(alice.get("/v1/auth/me"), 401, "session_revoked")


def test_api_keys_have_no_session_and_end_every_one(client: Any, alice: UserHandle) -> None:
    key = alice.post("/v1/api-keys", json={"name": "k"}).json()["key"]
    as_key = {"Authorization": f"Bearer {key}"}
    assert [s["current"] for s in client.get("/v1/auth/sessions", headers=as_key).json()["data"]] == [False]
    assert client.post("/v1/auth/sessions/sign-out-others", headers=as_key).json() == {"ended": 1}
    assert_problem(alice.get("/v1/auth/me"), 401, "session_revoked")
    assert client.get("/v1/auth/me", headers=as_key).status_code == 200


def test_browser_password_change_keeps_this_session(client: Any, alice: UserHandle) -> None:
    s = client.post("/v1/auth/session", json={"email": alice.email, "password": alice.password})
    browser = {"Authorization": f"Bearer {s.json()['access_token']}"}
    assert_problem(client.post("/v1/auth/session/password", headers=browser,
                               json={"current_password": "wrong one!", "new_password": "a new secret 12"}),
                   403, "wrong_password")
    assert_problem(client.post("/v1/auth/session/password", headers=browser,
                               json={"current_password": alice.password}), 422, "validation_error")
    r = client.post("/v1/auth/session/password", headers=browser,
                    json={"current_password": alice.password, "new_password": "a new secret 12"})
    assert r.status_code == 200 and "reelforge_session" in r.headers["set-cookie"]
    new = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/v1/auth/me", headers=new).status_code == 200
    assert_problem(alice.get("/v1/auth/me"), 401, "session_revoked")  # the other sign-in ended
    refreshed = client.post("/v1/auth/session/refresh")  # the cookie set by the change works
    assert refreshed.status_code == 200, refreshed.text


# --- the account's mail settings and notices --------------------------------------------------------------------
def test_mail_settings_are_the_callers(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    assert alice.get("/v1/account/mail").json()["job_finished"] is False
    r = alice.patch("/v1/account/mail", json={"job_finished": True, "credits_low": False})
    assert r.status_code == 200 and r.json()["job_finished"] is True and r.json()["credits_low"] is False
    assert bob.get("/v1/account/mail").json()["job_finished"] is False
    assert alice.patch("/v1/account/mail", json={}).json()["job_finished"] is True
    assert_problem(alice.patch("/v1/account/mail", json={"job_finished": "maybe"}), 422, "validation_error")
    assert_problem(alice.patch("/v1/account/mail", json={"spam": True}), 422, "validation_error")
    assert_problem(alice.get("/v1/account/mails", params={"limit": 0}), 422, "validation_error")
    assert [m["to"] for m in bob.get("/v1/account/mails").json()["data"]] == ["bob@example.com"]
    assert_problem(client.get("/v1/account/mail"), 401, "missing_credentials")


def emit(container: Any, type_: str, payload: dict[str, Any], owner_id: str | None) -> None:
    with container.store.tx() as tx:
        tx.events.emit(type_, payload, owner_id=owner_id, subject_id=payload.get("id"))


def test_job_finished_mail_is_opt_in(client: Any, container: Any, alice: UserHandle, bob: UserHandle,
                                     smtp: SmtpServer) -> None:
    alice.patch("/v1/account/mail", json={"job_finished": True})
    for owner in (alice, bob):
        emit(container, "job.succeeded", {"id": "a" * 32, "kind": "system.noop", "status": "succeeded"}, owner.id)
    emit(container, "job.failed", {"id": "b" * 32, "kind": "system.noop", "error": {"code": "x", "message": "boom"}},
         alice.id)
    container.events.fan_out()
    container.events.fan_out()  # nothing twice
    assert [m.kind for m in mails_of(container, user_id=bob.id)] == ["verify_email"]
    jobs = mails_of(container, user_id=alice.id, kind="job_finished")
    assert sorted(m.subject for m in jobs) == ["Job system.noop failed", "Job system.noop succeeded"]
    send(container)
    failed = next(m for m in smtp.to("alice@example.com") if m["Subject"] == "Job system.noop failed")
    assert "boom" in failed.get_body(preferencelist=("plain",)).get_content()


def test_job_finished_mail_from_a_real_job(client: Any, container: Any, alice: UserHandle, smtp: SmtpServer,
                                           worker: Any) -> None:
    """The worker's maintenance fans the outbox out and sends the mail: nothing is called by hand."""
    alice.patch("/v1/account/mail", json={"job_finished": True})
    job = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {}}).json()
    wait_for(lambda: any(job["id"] in m.get_body(preferencelist=("plain",)).get_content()
                         for m in smtp.to("alice@example.com")), timeout=30)


def test_receipt_once_per_purchase(client: Any, container: Any, alice: UserHandle, smtp: SmtpServer) -> None:
    payload = {"account_id": alice.id, "purchase_id": "pur_1", "credits": 500, "amount": 1999, "currency": "usd"}
    emit(container, "billing.purchase.completed", payload, alice.id)
    emit(container, "billing.purchase.completed", payload, alice.id)  # a redelivered fact
    emit(container, "billing.purchase.completed", {**payload, "account_id": "f" * 32, "purchase_id": "pur_2"}, None)
    container.events.fan_out()
    [receipt] = mails_of(container, kind="receipt")
    assert receipt.user_id == alice.id
    send(container)
    [msg] = [m for m in smtp.to("alice@example.com") if m["Subject"].startswith("Receipt")]
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "pur_1" in text and "500" in text and "19.99 USD" in text


def test_alarms_mail_the_admins(client: Any, container: Any, admin: UserHandle, alice: UserHandle,
                                smtp: SmtpServer) -> None:
    emit(container, "alarm.raised", {"key": "queue_age", "rule": "queue_age", "message": "queue is old",
                                     "value": 900.0, "threshold": 600.0}, admin.id)
    emit(container, "alarm.raised", {"key": "queue_age", "rule": "queue_age"}, alice.id)  # not an admin
    container.events.fan_out()
    [mail] = mails_of(container, kind="alarm")
    assert mail.to_addr == "root@example.com"
    send(container)
    assert any("queue is old" in m.get_body(preferencelist=("plain",)).get_content()
               for m in smtp.to("root@example.com"))



def test_credits_low_once_per_crossing(client: Any, container: Any, alice: UserHandle, bob: UserHandle,
                                       smtp: SmtpServer) -> None:
    def move(user: UserHandle, amount: int) -> None:
        with container.store.tx() as tx:
            tx.credits.credit(user.id, amount, "grant", note="test")

    bob.patch("/v1/account/mail", json={"credits_low": False})
    move(alice, -95)
    move(bob, -95)
    assert container.mail.check_credits_low() == 1
    assert container.mail.check_credits_low() == 0  # still below: once
    move(alice, 1)
    assert container.mail.check_credits_low() == 0
    move(alice, 50)  # back above: armed again
    assert container.mail.check_credits_low() == 0
    move(alice, -50)
    assert container.mail.check_credits_low() == 1
    send(container)
    lows = [m for m in smtp.to("alice@example.com") if "running low" in m["Subject"]]
    assert len(lows) == 2
    assert any("balance is 5 credits" in m.get_body(preferencelist=("plain",)).get_content() for m in lows)
    assert smtp.to("bob@example.com") and not [m for m in smtp.to("bob@example.com") if "low" in m["Subject"]]


def test_a_signed_in_password_change_tells_the_address(client: Any, container: Any, smtp: SmtpServer) -> None:
    alice = register(client, "alice@example.com")
    r = alice.post("/v1/auth/password", json={"current_password": alice.password, "new_password": "a brand new one"})
    assert r.status_code == 200, r.text
    send(container)
    changed = [m for m in smtp.to("alice@example.com") if "password" in m["Subject"].lower()
               and "reset" not in m["Subject"].lower()]
    assert len(changed) == 1, [m["Subject"] for m in smtp.to("alice@example.com")]
    # a wrong current password changes nothing and tells nobody
    bad = alice.post("/v1/auth/password", json={"current_password": "wrong", "new_password": "another one 2"},
                     headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert bad.status_code == 403
    send(container)
    assert len([m for m in smtp.to("alice@example.com") if m["Subject"] == changed[0]["Subject"]]) == 1
