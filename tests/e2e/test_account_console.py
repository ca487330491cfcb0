"""The account settings page and the pages the mails' links open, in a real browser: verification state and a
verification link, the mail preferences, password change, sessions and signing the others out, and the
forgot-password and reset pages. Mails go to a real SMTP server (aiosmtpd) through the SMTP adapter."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, Live, shot, sign_in
from tests.fixtures.smtp import SmtpServer

pytestmark = pytest.mark.e2e


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


@pytest.fixture(scope="module")
def smtp(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    """A real SMTP server, and the live server's mail sent there (its workers send through the SMTP adapter)."""
    from reelforge.adapters.mail.smtp import SmtpSender
    from reelforge.config import MailSettings

    server = SmtpServer(Path(tmp_path_factory.mktemp("smtp")))
    server.up()
    mail = live.container.mail
    before = mail.sender
    mail.sender = SmtpSender(MailSettings(**server.settings()))
    yield server
    mail.sender = before
    server.down()


def link_in_mail(smtp: SmtpServer, to: str, subject: str) -> str:
    """The link of the newest mail to `to` whose subject has `subject`, once it arrives."""
    def found() -> str | None:
        for msg in reversed(smtp.to(to)):
            if subject in str(msg["Subject"]):
                text = msg.get_body(preferencelist=("plain",)).get_content()
                m = re.search(r"(http://\S+#token=\S+)", text)
                return m.group(1) if m else None
        return None

    return str(wait_for(found, timeout=30))


def test_account_settings_page(page: Any, live: Live, smtp: SmtpServer) -> None:
    tokens = live.user("kim@example.com")
    other = live.user("kim@example.com")  # a second sign-in: another session
    sign_in(page, live, tokens, "/account")
    expect(page.locator("#account-address")).to_have_text("kim@example.com")
    expect(page.locator("#email-unverified")).to_be_visible()
    expect(page.locator("#sessions tr")).to_have_count(2)
    expect(page.locator("#sessions .badge")).to_have_text("this session")
    expect(page.locator("#mails tr").first).to_contain_text("Confirm your e-mail address")
    expect(page.locator("#account-data [data-account-actions]")).to_be_attached()  # room for export and delete
    expect(page.locator("#account-data")).to_be_hidden()  # until something is in it
    shot(page, "account")

    # Mail preferences.
    page.check("#pref-job-finished")
    expect(page.locator(".toast").last).to_have_text("Saved")
    assert live.api("GET", "/v1/account/mail", tokens["access_token"]).json()["job_finished"] is True

    # Sign the other session out.
    page.click("#sign-out-others")
    expect(page.locator("#sessions tr")).to_have_count(1)
    assert live.api("GET", "/v1/auth/me", other["access_token"]).json()["code"] == "session_revoked"

    # The verification link from the mail.
    link = link_in_mail(smtp, "kim@example.com", "Confirm your e-mail address")
    assert urlsplit(link).path == "/account/verify"
    page.goto(link)
    expect(page.locator("#link-status")).to_have_text("kim@example.com is confirmed. Thank you!")
    assert "#" not in page.url  # the token does not stay in the address bar or the history
    page.goto(live.url + "/account")
    expect(page.locator("#email-verified")).to_be_visible()
    expect(page.locator("#verify-box")).to_be_hidden()

    # Password change: this session goes on.
    page.fill("#current_password", "not it at all")
    page.fill("#new_password", "kim's new secret 1")
    page.click("#password-form button[type=submit]")
    expect(page.locator("#password-form")).to_contain_text("current password is wrong")
    expect(page.locator("#current_password")).to_have_attribute("aria-invalid", "true")
    page.fill("#current_password", PASSWORD)
    page.click("#password-form button[type=submit]")
    expect(page.locator(".toast").last).to_contain_text("Password changed")
    page.reload()
    expect(page.locator("#account-address")).to_have_text("kim@example.com")
    with live.client() as c:
        assert c.post("/v1/auth/token", json={"email": "kim@example.com", "password": PASSWORD}).status_code == 401
        assert c.post("/v1/auth/token", json={"email": "kim@example.com",
                                              "password": "kim's new secret 1"}).status_code == 200


def test_forgot_and_reset_pages(page: Any, live: Live, smtp: SmtpServer) -> None:
    live.user("lee@example.com")
    page.goto(live.url + "/signin")
    page.click("text=Forgot your password?")
    expect(page).to_have_url(live.url + "/account/forgot")
    page.fill("#email", "lee@example.com")
    page.click("#forgot-form button[type=submit]")
    expect(page.locator("#link-status")).to_contain_text("If lee@example.com has an account")
    link = link_in_mail(smtp, "lee@example.com", "Reset your")
    page.goto(link)
    expect(page.locator("h1")).to_have_text("Choose a new password")
    assert "#" not in page.url
    page.fill("#new_password", "short")
    page.click("#reset-form button[type=submit]")
    expect(page.locator("#reset-form [aria-invalid=true]")).to_have_count(1)
    page.fill("#new_password", "lee's fresh secret 1")
    shot(page, "account-reset")
    page.click("#reset-form button[type=submit]")
    expect(page.locator("#link-status")).to_have_text("Your password is changed. Sign in with it.")
    # The same link again is refused (a fresh load: the page differs from the link by its fragment only).
    page.goto("about:blank")
    page.goto(link)
    page.fill("#new_password", "another secret 22")
    page.click("#reset-form button[type=submit]")
    expect(page.locator("#reset-form .form-error")).to_contain_text("not valid or was already used")
    with live.client() as c:
        assert c.post("/v1/auth/token", json={"email": "lee@example.com",
                                              "password": "lee's fresh secret 1"}).status_code == 200
