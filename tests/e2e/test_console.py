"""The web console in a real browser: sign-up and sign-in, image generation with live progress, jobs,
API keys, webhooks, uploads, credits and the admin pages. Timing-tolerant (waits for states, never sleeps
a fixed time); every page's screenshot is saved under REELFORGE_SCREENSHOTS when it is set."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.conftest import PASSWORD, Live, shot, sign_in
from tests.fixtures.receiver import Receiver, by_type

pytestmark = pytest.mark.e2e

JOB_TIMEOUT = 90_000  # ms: the first job of a run also builds and loads the tiny test model


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


def generate(page: Any, live: Live, prompt: str) -> str:
    """On /generate: fill the form for tiny-sd (64x64, 2 steps), submit, wait for the end; returns the job id."""
    expect(page.locator("#model")).to_have_value("tiny-sd")
    expect(page.locator("#width")).to_have_value("64")
    page.fill("#prompt", prompt)
    page.fill("#steps", "2")
    page.click("#generate-form button[type=submit]")
    expect(page.locator("#run")).to_be_visible()
    expect(page.locator("#run-bar")).to_have_attribute("aria-valuenow", "100", timeout=JOB_TIMEOUT)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    href = page.locator("#run-open").get_attribute("href")
    assert href and href.startswith("/jobs/")
    return href.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def ada(live: Live) -> dict[str, Any]:
    return live.user("ada@example.com")


def test_register_sign_in_and_out(page: Any, live: Live) -> None:
    page.goto(live.url + "/jobs")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fjobs$"))
    shot(page, "signin")

    page.click("text=Create an account")
    expect(page).to_have_url(live.url + "/register")
    page.fill("#email", "grace@example.com")
    page.fill("#password", "short")
    page.click("button[type=submit]")
    # The API's 422 problem lands next to the field it names.
    expect(page.locator(".field-error[data-for=password]")).to_contain_text("at least 8 characters")
    expect(page.locator("#password")).to_have_attribute("aria-invalid", "true")
    shot(page, "register")

    page.fill("#password", PASSWORD)
    expect(page.locator(".field-error[data-for=password]")).to_be_hidden()
    page.click("button[type=submit]")
    expect(page).to_have_url(live.url + "/")
    expect(page.locator(".topbar [data-me=credits]")).to_have_text("100")
    expect(page.locator("[data-me=email]")).to_have_text("grace@example.com")
    expect(page.locator(".nav-section", has_text="Admin")).to_be_hidden()

    page.click("[data-user-toggle]")
    page.click("text=Sign out")
    expect(page).to_have_url(live.url + "/signin")

    page.fill("#email", "grace@example.com")
    page.fill("#password", "not my password")
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_be_visible()
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(live.url + "/")
    expect(page.locator("[data-me=email]")).to_have_text("grace@example.com")

    # Registering an address that has an account: the API does not tell, the sign-in that follows fails.
    page.click("[data-user-toggle]")
    page.click("text=Sign out")
    expect(page).to_have_url(live.url + "/signin")  # sign-out revokes the session first, then leaves
    page.goto(live.url + "/register")
    page.fill("#email", "grace@example.com")
    page.fill("#password", "another long password")
    page.click("button[type=submit]")
    expect(page.locator(".form-error")).to_contain_text("has an account already")
    expect(page).to_have_url(live.url + "/register")


def test_generate_image_with_live_progress(page: Any, live: Live, ada: dict[str, Any]) -> None:
    sign_in(page, live, ada, "/generate")
    # Record every value the progress bar shows, to see that it moved while the job ran.
    page.evaluate("""() => {
        window.__pcts = [];
        new MutationObserver(() => window.__pcts.push(document.querySelector('#run-bar').getAttribute('aria-valuenow')))
            .observe(document.querySelector('#run-bar'), {attributes: true, attributeFilter: ['aria-valuenow']});
    }""")
    job_id = generate(page, live, "a lighthouse at dusk, oil painting")
    values = [int(v) for v in page.evaluate("window.__pcts")]
    assert values[-1] == 100 and values == sorted(values), values

    image = page.locator("#run-gallery img").first
    expect(image).to_be_visible()
    assert page.evaluate("(img) => img.complete && img.naturalWidth", image.element_handle()) == 64
    expect(page.locator("#run-gallery a", has_text="Download")).to_have_attribute("href", re.compile("/v1/storage/objects/"))
    expect(page.locator("#recent-images img").first).to_be_visible()
    expect(page.locator(".topbar [data-me=credits]")).to_have_text("99")
    shot(page, "generate")

    # "Reuse settings" fills the form with the job's input and the image's seed.
    page.fill("#prompt", "")
    page.locator("#run-gallery [data-reuse]").click()
    expect(page.locator("#prompt")).to_have_value("a lighthouse at dusk, oil painting")
    expect(page.locator("#seed")).not_to_have_value("")

    # The result opens on the job's page: outputs, input and the execution history with step durations.
    page.locator("#run-gallery a.shot-img, #run-gallery figure > a").first.click()
    expect(page).to_have_url(live.url + f"/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-bar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#job-outputs img")).to_be_visible()
    expect(page.locator("#job-outputs .asset-link", has_text="metadata.json")).to_be_visible()
    expect(page.locator("#job-input")).to_contain_text('"model": "tiny-sd"')
    step = page.locator(".tl-item", has=page.locator(".path", has_text="generate")).filter(has_text="TaskSucceeded")
    expect(step.locator(".tl-dur em")).to_have_text(re.compile(r"^(\d+(\.\d+)? (ms|s)|\d+ min \d+ s)$"))
    expect(page.locator(".tl-item", has_text="ExecutionSucceeded")).to_be_visible()
    expect(page.locator("#job-retry")).to_have_count(0)
    shot(page, "job")
    # "Reuse settings" goes to the page its application names for the job's kind, which fills its form.
    expect(page.locator("#job-reuse")).to_have_attribute("href", f"/generate?reuse={job_id}")
    page.click("#job-reuse")
    expect(page.locator("#prompt")).to_have_value("a lighthouse at dusk, oil painting")
    page.go_back()
    expect(page.locator("#job-status")).to_have_text("succeeded")

    # The jobs list: live, filterable by status and kind, filters kept in the address bar.
    page.click("nav >> text=Jobs")
    row = page.locator("#jobs tr", has=page.locator(f"a[href='/jobs/{job_id}']"))
    expect(row.locator(".badge")).to_have_text("succeeded")
    page.select_option("#f-status", "failed")
    expect(page.locator("#jobs")).to_contain_text("No jobs match these filters")
    expect(page).to_have_url(live.url + "/jobs?status=failed")
    page.select_option("#f-status", "")
    page.select_option("#f-kind", "image.generate")
    expect(row).to_be_visible()
    shot(page, "jobs")

    page.click("nav >> text=Dashboard")
    expect(page.locator("#recent-jobs a", has_text=job_id[:8])).to_be_visible()
    expect(page.locator("#latest-images img").first).to_be_visible()
    expect(page.locator("#quick-actions a.btn-primary")).to_have_attribute("href", "/generate")
    expect(page.locator("[data-stat=succeeded]")).to_have_text("1")
    shot(page, "dashboard")

    page.click("nav >> text=Credits")
    expect(page.locator("#credit-balance")).to_have_text("99")
    expect(page.locator("#ledger .badge", has_text="reserve")).to_have_count(1)
    expect(page.locator("#ledger .badge", has_text="grant")).to_have_count(1)
    shot(page, "credits")


def test_cancel_and_retry(page: Any, live: Live) -> None:
    tokens = live.user("cancel@example.com")
    # A long job (100 steps, some 30 s here) to cancel while it runs: cancellation is checked at every step.
    body = {"kind": "image.generate", "input": {"prompt": "slow", "model": "tiny-sd", "width": 64, "height": 64,
                                                 "steps": 100, "seed": 1}}
    r = live.api("POST", "/v1/jobs", tokens["access_token"], json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    sign_in(page, live, tokens, f"/jobs/{job_id}")
    expect(page.locator("#job-cancel")).to_be_visible()
    page.click("#job-cancel")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=JOB_TIMEOUT)
    expect(page.locator(".tl-item", has_text="JobCancelled").first).to_be_visible()
    expect(page.locator("#job-retry")).to_be_visible()
    shot(page, "job-cancelled")
    # Retry makes a new job with the same input and opens it.
    page.click("#job-retry")
    expect(page).not_to_have_url(live.url + f"/jobs/{job_id}")
    new_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#job-input")).to_contain_text('"prompt": "slow"')
    assert live.api("POST", f"/v1/jobs/{new_id}/cancel", tokens["access_token"]).status_code in (200, 409)


def test_api_keys_show_once_and_revoke(page: Any, live: Live, ada: dict[str, Any]) -> None:
    sign_in(page, live, ada, "/api-keys")
    expect(page.locator("#keys")).not_to_contain_text("Loading")
    page.click("#key-form button[type=submit]")
    expect(page.locator(".field-error[data-for=name]")).to_be_visible()

    page.fill("#key-name", "render-server")
    page.click("#key-form button[type=submit]")
    secret = page.locator("#created-key-value")
    expect(secret).to_have_text(re.compile(r"^rf_"))
    key = secret.inner_text()
    row = page.locator("#keys tr", has_text="render-server")
    expect(row.locator(".badge")).to_have_text("active")
    assert live.api("GET", "/v1/auth/me", key).status_code == 200
    shot(page, "api-keys")

    row.locator("button", has_text="Revoke").click()
    expect(row.locator(".badge")).to_have_text("revoked")
    assert live.api("GET", "/v1/auth/me", key).status_code == 401

    # A read-only key limited to one application: what the form sends is what the server enforces.
    page.fill("#key-name", "film-reader")
    page.select_option("#key-access", "read")
    page.check("#key-apps input[value=film]")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#created-key-value")).not_to_have_text(key)  # the new key replaced the first one's
    expect(page.locator("#created-key-value")).to_have_text(re.compile(r"^rf_"))
    limited = page.locator("#created-key-value").inner_text()
    row = page.locator("#keys tr", has_text="film-reader")
    expect(row).to_contain_text("app:film, read")  # sorted, as the server keeps them
    assert live.api("GET", "/v1/projects", limited).status_code == 200
    refused = live.api("GET", "/v1/roto/sessions", limited)
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    assert live.api("POST", "/v1/projects", limited, json={"title": "x"}).json()["code"] == "insufficient_scope"
    # Shown once: the key is not in the list, and a reload no longer shows it.
    page.reload()
    expect(page.locator("#keys")).to_contain_text("render-server")
    expect(page.locator("#created-key-value")).to_have_count(0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def test_webhooks_validation_and_test_delivery(page: Any, live: Live, ada: dict[str, Any],
                                               receiver: Receiver) -> None:
    sign_in(page, live, ada, "/webhooks")
    page.fill("#wh-url", "ftp://example.com/hook")
    page.click("#webhook-form button[type=submit]")
    expect(page.locator(".field-error[data-for=url]")).to_contain_text("http(s)")

    page.fill("#wh-url", receiver.url("/reelforge"))
    page.fill("#wh-desc", "Render farm")
    page.click("#webhook-form button[type=submit]")
    expect(page.locator("#new-webhook .secret-value code")).to_have_text(re.compile(r"^whsec_"))
    card = page.locator(".webhook", has_text="/reelforge")
    expect(card).to_contain_text("job.succeeded, job.failed")
    card.locator("button", has_text="Send test").click()
    receiver.wait_for(by_type("webhook.test"))
    expect(card.locator("tbody .badge")).to_have_text("delivered", timeout=20_000)
    expect(card.locator("tbody")).to_contain_text("HTTP 200")
    shot(page, "webhooks")


def test_uploads_single_and_multipart(page: Any, live: Live, ada: dict[str, Any]) -> None:
    sign_in(page, live, ada, "/uploads")
    big = os.urandom(7 * 1024 * 1024)  # over the 6 MiB multipart threshold: parts of 5 + 2 MiB
    page.set_input_files("#files", [
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello reelforge\n" * 100},
        {"name": "footage.bin", "mimeType": "application/octet-stream", "buffer": big},
    ])
    small = page.locator(".upload-item", has_text="notes.txt")
    large = page.locator(".upload-item", has_text="footage.bin")
    expect(small).to_contain_text("Uploaded", timeout=30_000)
    expect(large).to_contain_text("Uploaded", timeout=60_000)
    expect(large).to_contain_text("2 parts")
    expect(page.locator("#assets")).to_contain_text("footage.bin")
    expect(page.locator("#assets tr", has_text="footage.bin")).to_contain_text("7.0 MB")
    shot(page, "uploads")

    page.set_input_files("#files", [{"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}])
    expect(page.locator(".upload-item.failed", has_text="empty.txt")).to_contain_text("size")


# Records every value the upload list's progress bar takes (each XHR event is a task of its own, so each report
# reaches the observer separately).
RECORD_UPLOAD_BAR = """() => {
    window.__pcts = [];
    const list = document.querySelector('#upload-list');
    new MutationObserver(() => {
        const bar = list.querySelector('.upload-item .bar');
        if (bar) window.__pcts.push(Number(bar.getAttribute('aria-valuenow')));
    }).observe(list, {subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow']});
}"""


def stored_asset(live: Live, token: str, filename: str) -> tuple[dict[str, Any], bytes]:
    """The newest asset of that name, and its bytes as its signed download URL serves them."""
    listed = live.api("GET", "/v1/assets", token, params={"limit": 200}).json()["data"]
    asset_id = next(a["id"] for a in listed if a["filename"] == filename)
    asset = live.api("GET", f"/v1/assets/{asset_id}", token).json()
    with live.client() as c:
        r = c.get(asset["download"]["url"])
        assert r.status_code == 200, r.text
    return asset, r.content


def test_uploads_page_multipart_with_progress_and_retry(page: Any, live: Live, ada: dict[str, Any]) -> None:
    """Three parts of 5 + 5 + 1 MiB, sent a few at a time; part 2 is refused once (503) and sent again."""
    sign_in(page, live, ada, "/uploads")
    data = os.urandom(11 * 1024 * 1024)
    sent: list[int] = []

    def storage(route: Any) -> None:
        query = parse_qs(urlparse(route.request.url).query)
        if route.request.method == "PUT" and query.get("op") == ["part"]:
            number = int(query["part"][0])
            sent.append(number)
            if number == 2 and sent.count(2) == 1:
                route.fulfill(status=503, content_type="application/problem+json",
                              body=json.dumps({"title": "Service Unavailable", "status": 503, "code": "busy"}))
                return
        route.continue_()

    page.route("**/v1/storage/objects/**", storage)
    page.evaluate(RECORD_UPLOAD_BAR)
    page.set_input_files("#files", [{"name": "reel.bin", "mimeType": "application/octet-stream", "buffer": data}])
    item = page.locator(".upload-item", has_text="reel.bin")
    expect(item).to_contain_text("Uploaded", timeout=60_000)
    expect(item).to_contain_text("3 parts")
    assert sorted(sent) == [1, 2, 2, 3], sent

    pcts = page.evaluate("window.__pcts")
    assert pcts[-1] == 100 and any(0 < p < 100 for p in pcts), pcts
    asset, stored = stored_asset(live, ada["access_token"], "reel.bin")
    digest = hashlib.sha256(data).hexdigest()
    assert asset["size"] == len(data) and asset["sha256"] == digest
    assert hashlib.sha256(stored).hexdigest() == digest


def test_admin_pages_and_credit_grant(page: Any, live: Live) -> None:
    user = live.user("grantee@example.com")
    target = live.user("mallory@example.com")
    sign_in(page, live, live.admin(), "/admin/users")
    expect(page.locator(".nav-section", has_text="Admin")).to_be_visible()
    row = page.locator("#users tr[data-email='grantee@example.com']")
    expect(row).to_be_visible()

    row.locator("button", has_text="Grant").click()
    expect(row.locator(".field-error")).to_be_visible()  # no amount: the API's 422 next to the field
    row.locator("input[name=amount]").fill("50")
    row.locator("input[name=note]").fill("welcome bonus")
    row.locator("button", has_text="Grant").click()
    row = page.locator("#users tr[data-email='grantee@example.com']")
    expect(row.locator("td.num")).to_have_text("150")
    assert live.api("GET", "/v1/credits", user["access_token"]).json()["balance"] == 150

    page.locator("#users tr[data-email='mallory@example.com'] .switch").click()
    expect(page.locator("#users tr[data-email='mallory@example.com'] input[name=disabled]")).to_be_checked()
    assert live.api("GET", "/v1/auth/me", target["access_token"]).status_code in (401, 403)
    page.fill("#user-search", "grantee")
    expect(page.locator("#users tr[data-email='mallory@example.com']")).to_be_hidden()
    page.fill("#user-search", "")
    shot(page, "admin-users")

    page.click("nav >> text=Queue")
    expect(page.locator("#depth")).not_to_contain_text("Loading")
    expect(page.locator("#dead")).not_to_contain_text("Loading")
    shot(page, "admin-queue")

    page.click("nav >> text=System")
    expect(page.locator("#workers tr .badge").first).to_be_visible()
    expect(page.locator("#models")).to_contain_text("tiny-sd")
    expect(page.locator("[data-sys=version]")).to_have_text(re.compile(r"^\d+\.\d+"))
    shot(page, "admin-system")

    page.click("nav >> text=Overview")
    expect(page.locator("#chart-jobs svg, #chart-jobs .chart-empty")).to_be_visible()
    expect(page.locator("#chart-queue svg, #chart-queue .chart-empty")).to_be_visible()
    expect(page.locator("#alarms-active")).not_to_contain_text("Loading")
    expect(page.locator("#alarm-rules")).not_to_contain_text("Loading")
    shot(page, "admin-overview")


def test_admin_pages_refuse_users(page: Any, live: Live, ada: dict[str, Any]) -> None:
    sign_in(page, live, ada, "/admin/users")
    expect(page.locator("[data-admin-denied]")).to_be_visible()
    expect(page.locator("[data-requires-admin]")).to_be_hidden()
    expect(page.locator(".nav-section", has_text="Admin")).to_be_hidden()


def test_dark_theme_and_small_screens(browser: Any, live: Live, ada: dict[str, Any]) -> None:
    dark = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="dark", locale="en-GB")
    try:
        page = dark.new_page()
        sign_in(page, live, ada, "/")
        expect(page.locator("#recent-jobs")).not_to_contain_text("Loading")
        bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(13, 16, 21)", bg
        shot(page, "dashboard-dark")
        page.goto(live.url + "/generate")
        expect(page.locator("#recent-images")).not_to_contain_text("Loading")
        shot(page, "generate-dark")
    finally:
        dark.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="light", locale="en-GB",
                                device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = phone.new_page()
        sign_in(page, live, ada, "/")
        expect(page.locator(".sidebar")).not_to_be_in_viewport()
        page.click("[data-open-menu]")
        expect(page.locator(".sidebar")).to_be_in_viewport()
        page.click(".scrim", position={"x": 360, "y": 400})  # beside the open menu
        expect(page.locator(".sidebar")).not_to_be_in_viewport()
        expect(page.locator("#recent-jobs")).not_to_contain_text("Loading")
        shot(page, "dashboard-mobile")
    finally:
        phone.close()


def session_cookie(page: Any) -> dict[str, Any] | None:
    return next((c for c in page.context.cookies() if c["name"] == "reelforge_session"), None)


def test_expired_or_refused_tokens_are_refreshed(page: Any, live: Live) -> None:
    tokens = live.user("sleepy@example.com")
    # An access token past its expiry: the console refreshes it (through the session cookie) before the first request.
    sign_in(page, live, {**tokens, "expires_in": -60}, "/credits")
    expect(page.locator("#credit-balance")).to_have_text("100")
    stored = page.evaluate("() => JSON.parse(localStorage.getItem('reelforge.auth'))")
    assert stored["access"] != tokens["access_token"] and set(stored) == {"access", "exp"}
    cookie = session_cookie(page)
    assert cookie and cookie["value"] != tokens["refresh_token"]  # rotated
    # A token the API refuses (401) although it looks fresh: refreshed once, and the request is sent again.
    page.evaluate("() => { const s = JSON.parse(localStorage.getItem('reelforge.auth'));"
                  " s.access = 'not-a-token'; localStorage.setItem('reelforge.auth', JSON.stringify(s)); }")
    page.goto(live.url + "/jobs")
    expect(page.locator("#jobs")).to_contain_text("No jobs match")
    assert page.evaluate("() => JSON.parse(localStorage.getItem('reelforge.auth')).access") != "not-a-token"
    # A refresh token that no longer works signs the browser out.
    page.context.clear_cookies()
    page.evaluate("() => localStorage.setItem('reelforge.auth', JSON.stringify({access: 'x', exp: Date.now() - 1000}))")
    page.goto(live.url + "/api-keys")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fapi-keys$"))


def test_the_refresh_token_never_reaches_a_script(page: Any, live: Live) -> None:
    """Signing in keeps the refresh token in an HttpOnly, SameSite=Strict cookie sent only to the session
    routes: no script on the page (an injected one included) can read it; signing out revokes it."""
    tokens = live.user("cookie@example.com")
    page.goto(live.url + "/signin")
    page.fill("#email", "cookie@example.com")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(live.url + "/")
    expect(page.locator("[data-me=email]")).to_have_text("cookie@example.com")
    cookie = session_cookie(page)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/v1/auth/session"
    assert "reelforge_session" not in page.evaluate("() => document.cookie")
    stored = page.evaluate("() => JSON.stringify(Object.assign({}, localStorage, sessionStorage))")
    assert cookie["value"] not in stored and "rft_" not in stored
    page.click("[data-user-toggle]")
    page.click("text=Sign out")
    expect(page).to_have_url(live.url + "/signin")
    assert session_cookie(page) is None
    with live.client() as c:  # the cookie's refresh token was revoked, not only forgotten
        r = c.post("/v1/auth/refresh", json={"refresh_token": cookie["value"]})
        assert r.status_code == 401, r.text
    assert tokens["refresh_token"] != cookie["value"]


def test_api_text_is_shown_as_text(page: Any, live: Live) -> None:
    tokens = live.user("mallory-prompt@example.com")
    prompt = '<img src=x onerror="document.body.dataset.owned=1"> lighthouse'
    r = live.api("POST", "/v1/jobs?wait=60", tokens["access_token"], json={
        "kind": "image.generate", "input": {"prompt": prompt, "model": "tiny-sd", "width": 64, "height": 64,
                                             "steps": 2}})
    assert r.status_code in (200, 202), r.text
    sign_in(page, live, tokens, f"/jobs/{r.json()['id']}")
    expect(page.locator("#job-input")).to_contain_text('<img src=x onerror=')
    sign_in(page, live, tokens, "/generate")
    expect(page.locator("#recent-images .prompt").first).to_have_text(prompt)
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("() => document.body.dataset.owned") is None


def test_api_reference_renders_from_this_server_only(page: Any, live: Live) -> None:
    """/docs: Swagger UI draws every operation with its own files and its CSP, asking no other host."""
    hosts: set[str] = set()
    violations: list[str] = []
    page.on("request", lambda r: hosts.add(urlparse(r.url).netloc))
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(live.url + "/docs")
    expect(page.locator("#swagger-ui .opblock-summary-path", has_text="/v1/jobs").first).to_be_visible()
    assert hosts == {urlparse(live.url).netloc}, hosts
    assert not violations, violations
