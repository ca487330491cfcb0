"""The credits page in a real browser against a real server and a local fake Stripe: packs, the redirect to
Checkout, the way back once Stripe's webhook has granted the credits, purchase history and a receipt."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import _sqlite_url, make_settings
from tests.e2e.conftest import Live, _bind, shot, sign_in
from tests.fixtures.fake_stripe import FakeStripe

pytestmark = pytest.mark.e2e


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as _expect

    return _expect(locator)


@pytest.fixture(scope="module")
def stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def live(browser: Any, stripe: FakeStripe, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server with billing pointed at the fake Stripe (no worker: nothing here runs jobs)."""
    import uvicorn

    from reelforge.api.app import create_app
    from reelforge.container import Container

    tmp = tmp_path_factory.mktemp("e2e-billing")
    sock = _bind()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    container = Container(make_settings(
        tmp, _sqlite_url(tmp, tmp_path_factory.getbasetemp()), public_url=url, billing=stripe.settings(),
        rate_limit={"writes_per_window_ip": 100_000, "writes_per_window_account": 100_000}))
    server = uvicorn.Server(uvicorn.Config(create_app(container=container), log_level="warning", access_log=False,
                                           lifespan="off", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="e2e-billing", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Live(url=url, container=container)
    finally:
        server.should_exit = True
        thread.join(10)
        container.close()


def test_buy_credits_through_checkout(page: Any, live: Live, stripe: FakeStripe) -> None:
    tokens = live.user("buyer@example.com")
    sign_in(page, live, tokens, "/credits")
    expect(page.locator("#packs .pack")).to_have_count(3)
    creator = page.locator("#packs .pack", has_text="Creator")
    expect(creator).to_contain_text("500 credits")
    expect(creator).to_contain_text("$20.00")
    expect(page.locator("#purchases")).to_contain_text("No purchases yet.")

    # Buying sends the browser to Stripe's hosted page (the fake's).
    creator.locator("button[data-buy-pack]").click()
    expect(page).to_have_url(re.compile(re.escape(stripe.url) + r"/pay/cs_test_\w+$"))
    expect(page.locator("h1")).to_have_text("Pay 2000 usd")
    session_id = page.url.rsplit("/", 1)[1]

    # Stripe tells the server (a signed webhook over HTTP), then sends the browser back to the success URL.
    r = stripe.send(live.url + "/v1/billing/stripe/webhook", stripe.complete(session_id))
    assert r.status_code == 200 and r.json()["status"] == "paid", r.text
    success = stripe.sessions[session_id]["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
    page.goto(success)
    expect(page.locator("#checkout-notice")).to_contain_text("500 credits were added")
    expect(page.locator("#credit-balance")).to_have_text("600")
    expect(page.locator(".topbar [data-me=credits]")).to_have_text("600")
    row = page.locator("#purchases tr", has_text="creator")
    expect(row.locator(".badge")).to_have_text("paid")
    expect(row).to_contain_text("$20.00")
    expect(page.locator("#ledger .badge", has_text="purchase")).to_have_count(1)
    expect(page.locator("#credit-granted")).to_have_text("600")

    row.locator("[data-show-receipt]").click()
    receipt = page.locator("#receipt")
    expect(receipt).to_be_visible()
    expect(receipt).to_contain_text("RF-")
    expect(receipt).to_contain_text("buyer@example.com")
    expect(receipt).to_contain_text("500 credits (creator)")
    expect(page.locator("#credit-spent")).to_have_text("0")
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "credits-purchases")

    # A partial refund: a quarter of the credits goes back, and the page says so.
    assert stripe.send(live.url + "/v1/billing/stripe/webhook", stripe.refund(session_id, 500)).status_code == 200
    page.goto(live.url + "/credits")
    expect(page.locator("#purchases tr", has_text="creator").locator(".badge")).to_have_text("partly refunded")
    expect(page.locator("#credit-balance")).to_have_text("475")


def test_cancelled_checkout(page: Any, live: Live, stripe: FakeStripe) -> None:
    tokens = live.user("undecided@example.com")
    sign_in(page, live, tokens, "/credits")
    page.locator("#packs .pack", has_text="Starter").locator("button").click()
    expect(page).to_have_url(re.compile(r"/pay/cs_test_\w+$"))
    session_id = page.url.rsplit("/", 1)[1]
    page.goto(stripe.sessions[session_id]["cancel_url"])
    expect(page.locator("#checkout-notice")).to_have_text("Checkout cancelled: nothing was charged.")
    expect(page.locator("#purchases tr", has_text="starter").locator(".badge")).to_have_text("pending")
    expect(page.locator("#credit-balance")).to_have_text("100")
