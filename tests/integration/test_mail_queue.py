"""The mail senders against real servers (aiosmtpd with STARTTLS + AUTH, a local SendGrid v3 fake) and the mail
queue's guarantees: a failed send is retried with backoff, a permanent refusal is recorded, a sender that dies
after claiming a mail leaves it to be sent again, and `mail.provider: none` records that nothing was sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.adapters.mail.sendgrid import SendGridSender
from reelforge.adapters.mail.smtp import SmtpSender
from reelforge.config import MailSettings
from reelforge.domain.mail import Message
from reelforge.ports.mail import MailSendError
from tests.conftest import make_settings, register
from tests.fixtures.fake_sendgrid import FakeSendGrid
from tests.fixtures.smtp import SmtpServer, free_port

MSG = Message(id="m" * 32, to="ada@example.com", sender="Reelforge <noreply@reelforge.test>", subject="Hello",
              text="plain words", html="<p>html words</p>", reply_to="help@reelforge.test")


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path)
    server.up()
    yield server
    server.down()


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()
    yield fake
    fake.close()


# --- SMTP -----------------------------------------------------------------------------------------------------
def test_smtp_sends_over_starttls_with_auth(smtp: SmtpServer) -> None:
    sender = SmtpSender(MailSettings(**smtp.settings()))
    message_id = sender.send(MSG)
    [got] = smtp.messages
    assert message_id == got["Message-ID"] == f"<{'m' * 32}@reelforge.test>"
    assert got["To"] == "ada@example.com" and got["Subject"] == "Hello" and got["Reply-To"] == "help@reelforge.test"
    assert got.get_body(preferencelist=("plain",)).get_content().strip() == "plain words"
    assert got.get_body(preferencelist=("html",)).get_content().strip() == "<p>html words</p>"
    assert smtp.envelopes == [("noreply@reelforge.test", ["ada@example.com"])]
    assert smtp.logins == ["mailer"] and smtp.tls_sessions == 1


def test_smtp_failures_are_classified(smtp: SmtpServer, tmp_path: Path) -> None:
    cfg = smtp.settings()
    with pytest.raises(MailSendError) as bad_login:
        SmtpSender(MailSettings(**{**cfg, "smtp_password": "wrong"})).send(MSG)
    assert not bad_login.value.permanent and "authentication" in str(bad_login.value)
    smtp.refuse = ["451 4.3.0 try again later", "550 5.1.1 no such user"]
    with pytest.raises(MailSendError) as transient:
        SmtpSender(MailSettings(**cfg)).send(MSG)
    assert not transient.value.permanent
    with pytest.raises(MailSendError) as permanent:
        SmtpSender(MailSettings(**cfg)).send(MSG)
    assert permanent.value.permanent
    # A certificate this client does not trust: no mail goes out.
    with pytest.raises(MailSendError) as untrusted:
        SmtpSender(MailSettings(**{**cfg, "smtp_ca_file": ""})).send(MSG)
    assert not untrusted.value.permanent
    # Nobody listening.
    with pytest.raises(MailSendError):
        SmtpSender(MailSettings(**{**cfg, "smtp_port": free_port()})).send(MSG)
    assert smtp.messages == []


def test_smtp_refuses_a_server_without_starttls(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    class Keep:
        async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
            got.append(envelope)
            return "250 OK"

    got: list[Any] = []
    port = free_port()
    plain = Controller(Keep(), hostname="127.0.0.1", port=port)
    plain.start()
    try:
        cfg = MailSettings(provider="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_s=5)
        with pytest.raises(MailSendError, match="STARTTLS"):
            SmtpSender(cfg).send(MSG)
        assert got == []
        SmtpSender(cfg.model_copy(update={"smtp_security": "none"})).send(MSG)  # a local relay, on purpose
        assert len(got) == 1
    finally:
        plain.stop()


# --- SendGrid -------------------------------------------------------------------------------------------------
def test_sendgrid_posts_the_v3_body(sendgrid: FakeSendGrid) -> None:
    provider_id = SendGridSender(MailSettings(**sendgrid.settings())).send(MSG)
    assert provider_id
    [body] = sendgrid.accepted
    assert body["personalizations"] == [{"to": [{"email": "ada@example.com"}]}]
    assert body["from"] == {"email": "noreply@reelforge.test", "name": "Reelforge"}
    assert body["reply_to"] == {"email": "help@reelforge.test"}
    assert body["content"] == [{"type": "text/plain", "value": "plain words"},
                               {"type": "text/html", "value": "<p>html words</p>"}]
    assert body["custom_args"] == {"mail_id": "m" * 32}


@pytest.mark.parametrize(("status", "permanent"), [(429, False), (500, False), (503, False), (400, True),
                                                   (413, True), (403, False)])
def test_sendgrid_failures_are_classified(sendgrid: FakeSendGrid, status: int, permanent: bool) -> None:
    sendgrid.statuses = [status]
    with pytest.raises(MailSendError) as exc:
        SendGridSender(MailSettings(**sendgrid.settings())).send(MSG)
    assert exc.value.permanent is permanent and str(status) in str(exc.value)


def test_sendgrid_wrong_key_and_no_server(sendgrid: FakeSendGrid) -> None:
    with pytest.raises(MailSendError, match="401"):
        SendGridSender(MailSettings(**{**sendgrid.settings(), "sendgrid_api_key": "SG.wrong"})).send(MSG)
    with pytest.raises(MailSendError, match="not set"):
        SendGridSender(MailSettings(**{**sendgrid.settings(), "sendgrid_api_key": ""})).send(MSG)
    with pytest.raises(MailSendError, match="unreachable"):
        SendGridSender(MailSettings(**{**sendgrid.settings(),
                                       "sendgrid_url": f"http://127.0.0.1:{free_port()}"})).send(MSG)
    assert sendgrid.accepted == []


# --- the queue ------------------------------------------------------------------------------------------------
def _container(tmp_path: Path, db_url: str, mail: dict[str, Any]) -> Any:
    from reelforge.container import Container

    return Container(make_settings(tmp_path, db_url, mail={"retry_base_s": 30, "max_attempts": 3, **mail}))


def _client(c: Any) -> Any:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app

    return TestClient(create_app(container=c))


def _mails(c: Any) -> list[Any]:
    with c.store.tx(write=False) as tx:
        return list(tx.mail.mails())


def _make_due(c: Any) -> None:
    import sqlalchemy

    with c.store.tx() as tx:
        tx.s.execute(sqlalchemy.text("UPDATE mails SET next_attempt_at = 0 WHERE status = 'pending'"))


def test_a_failed_send_is_retried_with_backoff_until_it_goes(tmp_path: Path, db_url: str, smtp: SmtpServer) -> None:
    c = _container(tmp_path, db_url, smtp.settings())
    try:
        with _client(c) as client:
            register(client, "alice@example.com")
        smtp.down()  # the server is away
        assert c.mail.send_due() == 1
        [mail] = _mails(c)
        assert mail.status == "pending" and mail.attempts == 1 and "SMTP error" in (mail.last_error or "")
        assert mail.next_attempt_at - c.store.now() > 25  # backoff: retry_base_s
        assert c.mail.send_due() == 0  # not due yet
        smtp.up()
        smtp.refuse = ["451 4.7.1 greylisted"]
        _make_due(c)
        assert c.mail.send_due() == 1
        [mail] = _mails(c)
        assert mail.attempts == 2 and "451" in (mail.last_error or "")
        assert mail.next_attempt_at - c.store.now() > 55  # doubled
        _make_due(c)
        assert c.mail.send_due() == 1
        [mail] = _mails(c)
        assert mail.status == "sent" and mail.attempts == 3 and mail.body == "" and mail.last_error is None
        assert len(smtp.to("alice@example.com")) == 1
    finally:
        c.close()


def test_permanent_refusal_and_exhausted_attempts_are_recorded(tmp_path: Path, db_url: str,
                                                               sendgrid: FakeSendGrid) -> None:
    c = _container(tmp_path, db_url, sendgrid.settings())
    try:
        with _client(c) as client:
            register(client, "alice@example.com")
            register(client, "bob@example.com")
        sendgrid.statuses = [400, 500]
        assert c.mail.send_due() == 2
        by_to = {m.to_addr: m for m in _mails(c)}
        assert by_to["alice@example.com"].status == "failed" and "400" in str(by_to["alice@example.com"].last_error)
        assert by_to["bob@example.com"].status == "pending"
        sendgrid.statuses = [500, 500]
        for _ in range(2):
            _make_due(c)
            c.mail.send_due()
        bob = next(m for m in _mails(c) if m.to_addr == "bob@example.com")
        assert bob.status == "failed" and bob.attempts == 3  # max_attempts
        assert sendgrid.accepted == []
    finally:
        c.close()


def test_a_sender_that_dies_after_its_claim_leaves_the_mail_queued(tmp_path: Path, db_url: str,
                                                                   smtp: SmtpServer) -> None:
    c = _container(tmp_path, db_url, smtp.settings())
    try:
        with _client(c) as client:
            register(client, "alice@example.com")
        # A sender claims the mail and dies before sending (nothing recorded).
        with c.store.tx() as tx:
            [claimed] = tx.mail.claim_mails(10, hold_s=60)
        assert c.mail.send_due() == 0  # held by the dead sender
        [mail] = _mails(c)
        assert mail.status == "pending" and mail.attempts == 0
        _make_due(c)  # the hold ran out
        assert c.mail.send_due() == 1
        assert [m.status for m in _mails(c)] == ["sent"] and len(smtp.messages) == 1
        assert smtp.messages[0]["Message-ID"].startswith(f"<{claimed.id}@")
    finally:
        c.close()


def test_a_registration_that_rolls_back_queues_no_mail(tmp_path: Path, db_url: str) -> None:
    c = _container(tmp_path, db_url, {})
    try:
        def boom(tx: Any, user: Any) -> None:
            raise RuntimeError("crash after the mail was queued")

        c.auth.on_register.append(boom)
        with pytest.raises(RuntimeError):
            c.auth.register("alice@example.com", "a good password 1")
        assert _mails(c) == []
        c.auth.on_register.remove(boom)
        c.auth.register("alice@example.com", "a good password 1")
        assert [m.kind for m in _mails(c)] == ["verify_email"]
    finally:
        c.close()


def test_provider_none_records_that_nothing_was_sent(tmp_path: Path, db_url: str) -> None:
    c = _container(tmp_path, db_url, {"provider": "none"})
    try:
        c.auth.register("alice@example.com", "a good password 1")
        assert c.mail.send_due() == 1
        [mail] = _mails(c)
        assert mail.status == "skipped" and mail.provider == "none" and "not sent" in str(mail.last_error)
        assert mail.body == "" and mail.sent_at is None
    finally:
        c.close()


def test_mail_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from reelforge.config import Settings

    monkeypatch.setenv("REELFORGE_MAIL__PROVIDER", "sendgrid")
    monkeypatch.setenv("REELFORGE_MAIL__SENDGRID_API_KEY", "SG.x")
    monkeypatch.setenv("REELFORGE_MAIL__CREDITS_LOW_THRESHOLD", "25")
    s = Settings()
    assert s.mail.provider == "sendgrid" and s.mail.credits_low_threshold == 25
    assert "SG.x" not in repr(s.mail)
