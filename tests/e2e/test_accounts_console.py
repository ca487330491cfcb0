"""The admin audit log and the account's data page in a real browser: failed sign-ins and key changes appear in
the log and filter by action; a user downloads the export zip, sees their own activity, and deletes their account
(the confirmation box arms the button; afterwards the old password signs in no more)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PASSWORD, Live, shot, sign_in

pytestmark = pytest.mark.e2e


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def test_admin_audit_log_lists_and_filters(page: Any, live: Live) -> None:
    tokens = live.user("audited@example.com")
    with live.client() as c:
        c.post("/v1/auth/token", json={"email": "audited@example.com", "password": "wrong password 1"})
    live.api("POST", "/v1/api-keys", tokens["access_token"], json={"name": "ci", "scopes": ["read"]})
    sign_in(page, live, live.admin(), "/admin/audit")
    expect(page.locator("#audit tr[data-action='auth.sign_in_failed']").first).to_be_visible()
    expect(page.locator("#audit tr[data-action='key.created']").first).to_contain_text("scopes=[\"read\"]")
    shot(page, "admin-audit")
    page.fill("#audit-action", "key")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#audit tr[data-action='auth.sign_in_failed']")).to_have_count(0)
    expect(page.locator("#audit tr[data-action='key.created']").first).to_be_visible()
    page.fill("#audit-action", "no.such_action")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#audit")).to_contain_text("No entries match.")
    page.fill("#audit-action", "Not Valid!")
    page.click("#audit-filters button[type=submit]")
    # The API's 422 lands next to the field it names.
    expect(page.locator("#audit-action")).to_have_attribute("aria-invalid", "true")


def test_a_user_exports_and_deletes_their_account(page: Any, live: Live, tmp_path: Path) -> None:
    tokens = live.user("leaving@example.com")
    sign_in(page, live, tokens, "/account/data")
    expect(page.locator("#my-audit tr[data-action='auth.sign_in']").first).to_be_visible()
    with page.expect_download() as info:
        page.click("#export-btn")
    path = tmp_path / "export.zip"
    info.value.save_as(path)
    z = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    assert json.loads(z.read("account.json"))["email"] == "leaving@example.com"
    shot(page, "account-data")

    expect(page.locator("#delete-btn")).to_be_disabled()
    page.fill("#delete-password", "not my password")
    page.check("#delete-confirm")
    page.click("#delete-btn")
    expect(page.locator(".field-error[data-for=password]")).to_contain_text("wrong")
    page.fill("#delete-password", PASSWORD)
    page.click("#delete-btn")
    expect(page).to_have_url(live.url + "/signin?deleted=1")
    with live.client() as c:
        r = c.post("/v1/auth/token", json={"email": "leaving@example.com", "password": PASSWORD})
    assert r.status_code == 401
