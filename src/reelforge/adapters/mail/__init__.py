"""Mail providers behind the `MailSender` port (ports/mail.py), chosen by `mail.provider`."""

from __future__ import annotations

from typing import Any

from reelforge.domain.mail import Message
from reelforge.ports.mail import MailSender


class NoMailSender:
    """`mail.provider: none`: nothing is sent; the queue records each mail as skipped."""

    name = "none"
    delivers = False

    def send(self, message: Message) -> str | None:
        return None


def build_mail_sender(settings: Any) -> MailSender:
    """The provider named by the settings' mail section."""
    cfg = settings.mail
    if cfg.provider == "smtp":
        from reelforge.adapters.mail.smtp import SmtpSender

        return SmtpSender(cfg)
    if cfg.provider == "sendgrid":
        from reelforge.adapters.mail.sendgrid import SendGridSender

        return SendGridSender(cfg)
    return NoMailSender()
