"""SMTP submission (smtplib): STARTTLS or implicit TLS, and AUTH when a username is set."""

from __future__ import annotations

import smtplib
import ssl
from typing import Any

from reelforge.adapters.mail.mime import to_mime
from reelforge.domain.mail import Message
from reelforge.ports.mail import MailSendError


class SmtpSender:
    """One connection per message: mail is rare and a pooled connection would outlive the server's idle timeout."""

    name = "smtp"
    delivers = True

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cfg.smtp_ca_file or None)

    def send(self, message: Message) -> str | None:
        cfg = self.cfg
        mime = to_mime(message)
        try:
            if cfg.smtp_security == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout_s,
                                                      context=self._tls())
            else:
                conn = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout_s)
            with conn:
                conn.ehlo()
                if cfg.smtp_security == "starttls":
                    # Refuse to go on in clear: credentials and reset links must not cross the network unencrypted.
                    if not conn.has_extn("starttls"):
                        raise MailSendError("the SMTP server does not offer STARTTLS")
                    conn.starttls(context=self._tls())
                    conn.ehlo()
                if cfg.smtp_username:
                    conn.login(cfg.smtp_username, cfg.smtp_password)
                refused = conn.send_message(mime)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise MailSendError(f"recipient refused ({codes})", permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise MailSendError(f"sender refused ({exc.smtp_code})", permanent=exc.smtp_code >= 500) from exc
        except smtplib.SMTPDataError as exc:
            raise MailSendError(f"message refused ({exc.smtp_code})", permanent=exc.smtp_code >= 500) from exc
        except smtplib.SMTPAuthenticationError as exc:
            # A configuration error: retried (with backoff), so mails go out once the credentials are fixed.
            raise MailSendError(f"SMTP authentication failed ({exc.smtp_code})") from exc
        except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise MailSendError(f"SMTP error: {type(exc).__name__}: {exc}"[:500]) from exc
        if refused:
            raise MailSendError(f"recipient refused ({list(refused.values())})", permanent=True)
        return str(mime["Message-ID"])
