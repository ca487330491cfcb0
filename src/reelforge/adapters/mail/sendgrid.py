"""The SendGrid v3 Web API: `POST /v3/mail/send` with the API key as a bearer token."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

import httpx

from reelforge.domain.mail import Message
from reelforge.ports.mail import MailSendError


def _address(value: str) -> dict[str, str]:
    name, email = parseaddr(value)
    return {"email": email, **({"name": name} if name else {})}


class SendGridSender:
    name = "sendgrid"
    delivers = True

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.url = cfg.sendgrid_url.rstrip("/") + "/v3/mail/send"

    def payload(self, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {
            "personalizations": [{"to": [_address(message.to)]}],
            "from": _address(message.sender),
            "subject": message.subject,
            "content": [{"type": "text/plain", "value": message.text},
                        *([{"type": "text/html", "value": message.html}] if message.html else [])],
            # The queue's id travels with the message (event webhooks echo custom_args back).
            "custom_args": {"mail_id": message.id},
        }
        if message.reply_to:
            body["reply_to"] = _address(message.reply_to)
        return body

    def send(self, message: Message) -> str | None:
        if not self.cfg.sendgrid_api_key:
            raise MailSendError("mail.sendgrid_api_key is not set")
        try:
            r = httpx.post(self.url, json=self.payload(message), timeout=self.cfg.sendgrid_timeout_s,
                           headers={"Authorization": f"Bearer {self.cfg.sendgrid_api_key}"})
        except httpx.HTTPError as exc:
            raise MailSendError(f"SendGrid unreachable: {type(exc).__name__}") from exc
        if r.status_code == 202 or 200 <= r.status_code < 300:
            return r.headers.get("X-Message-Id")
        detail = r.text[:300]
        # 408, 429 and 5xx pass; 401/403 is a key to fix (retried, so mail goes out once it is); other 4xx say the
        # message itself is wrong and will be refused again.
        permanent = 400 <= r.status_code < 500 and r.status_code not in (401, 403, 408, 429)
        raise MailSendError(f"SendGrid answered {r.status_code}: {detail}", permanent=permanent)
