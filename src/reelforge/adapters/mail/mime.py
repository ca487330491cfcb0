"""A message as MIME: plain text and HTML alternatives, a stable Message-ID."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from reelforge.domain.mail import Message


def domain_of(address: str) -> str:
    """The domain of an address such as `Name <user@example.com>` ("localhost" when it has none)."""
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def to_mime(message: Message) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = message.sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(localtime=False)
    # The queue's id: a mail sent twice (a crash between the provider's answer and recording it) has one id.
    mime["Message-ID"] = f"<{message.id}@{domain_of(message.sender)}>"
    if message.reply_to:
        mime["Reply-To"] = message.reply_to
    mime["Auto-Submitted"] = "auto-generated"
    mime.set_content(message.text)
    if message.html:
        mime.add_alternative(message.html, subtype="html")
    return mime
