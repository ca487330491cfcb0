"""The links of verification and reset mails: forged, reused and expired tokens are refused; only hashes are kept
and mail bodies are sealed at rest; and forgot-password tells nothing, in its answer or its timing, about who has
an account."""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.conftest import make_settings, register


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    # The default answer floor of forgot-password; no mail provider (the mail is queued either way).
    return make_settings(tmp_path, db_url, mail={"provider": "none", "resend_interval_s": 0})


def queued_link(container: Any, kind: str, to: str) -> str:
    """The token in the newest queued mail of `kind` (its body opened as the sender would)."""
    import json

    with container.store.tx(write=False) as tx:
        mail = tx.mail.mails(kind=kind, to_addr=to)[0]
    text = json.loads(container.secret_box.open(mail.body))["text"]
    found = re.search(r"#token=([A-Za-z0-9_%.\-]+)", text)
    assert found
    return unquote(found.group(1))


def test_tokens_and_links_are_not_readable_from_the_database(client: Any, container: Any) -> None:
    import sqlalchemy

    register(client, "alice@example.com")
    client.post("/v1/auth/password/forgot", json={"email": "alice@example.com"})
    tokens = [queued_link(container, "verify_email", "alice@example.com"),
              queued_link(container, "password_reset", "alice@example.com")]
    with container.store.tx(write=False) as tx:
        rows = [tuple(str(v) for v in r) for t in ("link_tokens", "mails")
                for r in tx.s.execute(sqlalchemy.text(f"SELECT * FROM {t}")).all()]
    dump = "\n".join(" ".join(r) for r in rows)
    for token in tokens:
        assert token not in dump and token.split("_", 1)[1] not in dump
    assert "account/reset" not in dump and "account/verify" not in dump  # the bodies are sealed


def test_forged_reused_and_expired_tokens(client: Any, container: Any) -> None:
    import secrets

    import sqlalchemy

    register(client, "alice@example.com")
    good = queued_link(container, "verify_email", "alice@example.com")
    for forged in ["rfv_" + secrets.token_urlsafe(32), good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
                   good.replace("rfv_", "rfr_"), good + "x", "rfv_", " " + good[:20]]:
        r = client.post("/v1/auth/verify", json={"token": forged})
        assert r.status_code == 400 and r.json()["code"] == "invalid_mail_token", forged
    assert client.post("/v1/auth/verify", json={"token": f"  {good}  "}).status_code == 200
    r = client.post("/v1/auth/verify", json={"token": good})
    assert r.status_code == 400 and r.json()["code"] == "invalid_mail_token"  # reused
    client.post("/v1/auth/password/forgot", json={"email": "alice@example.com"})
    reset = queued_link(container, "password_reset", "alice@example.com")
    with container.store.tx() as tx:
        tx.s.execute(sqlalchemy.text("UPDATE link_tokens SET expires_at = created_at - 1"))
    r = client.post("/v1/auth/password/reset", json={"token": reset, "new_password": "brand new secret 1"})
    assert r.status_code == 410 and r.json()["code"] == "mail_token_expired"
    ok = client.post("/v1/auth/token", json={"email": "alice@example.com", "password": "correct horse battery"})
    assert ok.status_code == 200  # nothing changed


def test_forgot_password_answers_alike_and_in_the_same_time(client: Any, container: Any) -> None:
    """Known and unknown addresses: the same answer, and medians within 10 % of each other."""
    register(client, "alice@example.com")
    container.ip_limiter.reset()

    def timed(email: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        r = client.post("/v1/auth/password/forgot", json={"email": email})
        return time.perf_counter() - t0, r.status_code, r.content

    known: list[float] = []
    unknown: list[float] = []
    for i in range(12):
        a = timed("alice@example.com")
        b = timed(f"nobody{i}@example.com")
        assert a[1:] == b[1:] == (202, b'{"status":"accepted"}')
        known.append(a[0])
        unknown.append(b[0])
    k, u = statistics.median(known), statistics.median(unknown)
    assert abs(k - u) / max(k, u) < 0.10, (k, u)
    # The known address really got its mails (so the two paths did differ behind the answer).
    with container.store.tx(write=False) as tx:
        assert len(tx.mail.mails(kind="password_reset")) == 12
        assert tx.mail.mails(to_addr="nobody0@example.com") == []


def test_without_the_answer_floor_the_timing_would_tell(tmp_path: Path, sqlite_url: str) -> None:
    """The floor is what makes the timing equal: the work behind the answer alone differs measurably (this test
    shows the floor is needed, so it fails if the floor stops being applied)."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, sqlite_url, mail={"provider": "none", "resend_interval_s": 0,
                                                            "forgot_min_response_s": 0.25}))
    try:
        with TestClient(create_app(container=c)) as client:
            register(client, "alice@example.com")
            t0 = time.perf_counter()
            client.post("/v1/auth/password/forgot", json={"email": "nobody@example.com"})
            assert time.perf_counter() - t0 >= 0.25
    finally:
        c.close()
