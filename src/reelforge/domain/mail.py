"""E-mail: the records of queued mails and single-use link tokens, and the texts of the platform's mails.

Pure: the mail service renders a mail here, stores it in the mail queue inside the transaction of the change
that causes it, and a sender adapter delivers it later (services/mail.py).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MailStatus(StrEnum):
    pending = "pending"  # queued; sent by the next pass of a worker once due
    sent = "sent"  # the provider accepted it
    failed = "failed"  # refused for good, or every attempt failed
    skipped = "skipped"  # no provider is configured (`mail.provider: none`): nothing was sent


class TokenPurpose(StrEnum):
    verify_email = "verify_email"
    reset_password = "reset_password"


# A link token names its purpose in its prefix, so one pasted into the wrong form is refused at once.
TOKEN_PREFIX = {TokenPurpose.verify_email: "rfv_", TokenPurpose.reset_password: "rfr_"}


@dataclass(frozen=True, slots=True)
class Mail:
    id: str
    kind: str
    user_id: str | None
    to_addr: str
    subject: str
    body: str  # sealed (SecretBox): reset links are secrets; emptied once sent
    dedupe_key: str | None
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    provider: str | None
    provider_id: str | None
    created_at: float
    sent_at: float | None


@dataclass(frozen=True, slots=True)
class LinkToken:
    id: str
    user_id: str
    purpose: str
    token_hash: str
    email: str  # the address the link was sent to: a verification holds only while the account keeps it
    created_at: float
    expires_at: float
    used_at: float | None


@dataclass(frozen=True, slots=True)
class MailPrefs:
    user_id: str
    verified_email: str | None  # the address last verified; the account is verified while its e-mail equals it
    verified_at: float | None
    job_finished: bool  # opt-in
    credits_low: bool  # on unless turned off
    credits_low_armed: bool  # the balance was at or above the threshold since the last notice
    updated_at: float


@dataclass(frozen=True, slots=True)
class Message:
    """What a sender adapter delivers."""

    id: str  # the queued mail's id: a stable Message-ID, so a resend after a crash can be told apart
    to: str
    sender: str
    subject: str
    text: str
    html: str
    reply_to: str = ""


def retry_delay_s(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff after the `attempts`-th failure (1, 2, ...), capped."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


# --- texts ------------------------------------------------------------------------------------------------------
def _page(lines: list[str], link: tuple[str, str] | None = None) -> tuple[str, str]:
    """(text, html) of a short mail: paragraphs, and optionally one link as a button."""
    text = "\n\n".join(lines)
    parts = [f"<p>{html.escape(line)}</p>" for line in lines]
    if link:
        label, url = link
        text += f"\n\n{label}: {url}"
        parts.append(f'<p><a href="{html.escape(url, quote=True)}">{html.escape(label)}</a></p>'
                     f"<p style=\"color:#666;font-size:12px\">{html.escape(url)}</p>")
    body = "<!doctype html><html><body style=\"font-family:sans-serif\">" + "".join(parts) + "</body></html>"
    return text + "\n", body


def render(kind: str, data: dict[str, Any], product: str = "reelforge") -> tuple[str, str, str]:
    """(subject, text, html) of a mail of `kind` from its data."""
    if kind == "verify_email":
        hours = max(1, round(float(data["ttl_s"]) / 3600))
        return (f"Confirm your e-mail address for {product}", *_page([
            f"Confirm that {data['email']} is your address: open the link below within {hours} hours.",
            "If you did not create an account, ignore this mail."], ("Confirm my address", data["url"])))
    if kind == "password_reset":
        minutes = max(1, round(float(data["ttl_s"]) / 60))
        return (f"Reset your {product} password", *_page([
            f"Someone asked to reset the password of the account {data['email']}.",
            f"Choose a new password with the link below; it works once, within {minutes} minutes. Your sessions "
            "end when the password changes.",
            "If you did not ask for this, ignore this mail: your password stays as it is."],
            ("Choose a new password", data["url"])))
    if kind == "password_changed":
        return (f"Your {product} password was changed", *_page([
            f"The password of the account {data['email']} was just changed, and every session was signed out.",
            "If this was not you, reset your password now and check your API keys."]))
    if kind == "job_finished":
        status = str(data.get("status", ""))
        return (f"Job {data.get('kind', '')} {status}", *_page([
            f"Your job {data.get('job_id', '')} ({data.get('kind', '')}) has {status}."
            + (f" Error: {data['error']}." if data.get("error") else "")], ("Open the job", data["url"])))
    if kind == "credits_low":
        return (f"Your {product} credits are running low", *_page([
            f"Your balance is {data['balance']} credits, below {data['threshold']}.",
            "Jobs that cost more than your balance are refused until you add credits."],
            ("Add credits", data["url"])))
    if kind == "receipt":
        amount = data.get("amount")
        currency = str(data.get("currency") or "").upper()
        money = f"{int(amount) / 100:.2f} {currency}" if isinstance(amount, int) else f"{amount} {currency}"
        return (f"Receipt for your {product} purchase", *_page([
            f"Thank you for your purchase {data.get('purchase_id', '')}.",
            f"Credits added: {data.get('credits')}. Amount paid: {money.strip()}."], ("Your credits", data["url"])))
    if kind == "alarm":
        return (f"[{product} alarm] {data.get('rule', '')} raised", *_page([
            f"The alarm {data.get('key', '')} was raised: {data.get('message', '')}",
            f"Value {data.get('value')} against the threshold {data.get('threshold')}."],
            ("Open the alarms", data["url"])))
    raise ValueError(f"unknown mail kind {kind!r}")


MAIL_KINDS = ("verify_email", "password_reset", "password_changed", "job_finished", "credits_low", "receipt",
              "alarm")
