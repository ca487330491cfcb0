"""Sending e-mail (a provider adapter) and the mail queue, link tokens and mail preferences in the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reelforge.domain.mail import LinkToken, Mail, MailPrefs, Message


class MailSendError(Exception):
    """A provider did not take a message. `permanent`: sending it again cannot help (the address or the message is
    refused); otherwise the mail is retried with backoff."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class MailSender(Protocol):
    """One mail provider (SMTP, SendGrid, none)."""

    # The provider's name as recorded on each mail it handled ("smtp", "sendgrid", "none").
    name: str
    # False for the `none` provider: mails are recorded as skipped, nothing leaves the server.
    delivers: bool

    def send(self, message: Message) -> str | None:
        """Hand one message to the provider; returns the provider's id for it (when it gives one). Raises
        MailSendError when the provider refuses it or cannot be reached."""
        ...


class MailRepository(Protocol):
    """The mail queue, single-use link tokens and each account's mail preferences and verification."""

    def add_mail(self, *, kind: str, to_addr: str, subject: str, body: str, user_id: str | None,
                 dedupe_key: str | None, status: str = "pending") -> bool:
        """Queue a mail, due now; False (nothing written) when a mail with this dedupe key exists."""
        ...

    def mail(self, mail_id: str) -> Mail | None:
        """One queued or sent mail."""
        ...

    def mails(self, *, user_id: str | None = None, to_addr: str | None = None, kind: str | None = None,
              limit: int = 100) -> list[Mail]:
        """Mails, newest first (one account's, to one address, of one kind)."""
        ...

    def claim_mails(self, limit: int, hold_s: float) -> list[Mail]:
        """Take up to `limit` due pending mails, oldest first, and push their next attempt `hold_s` ahead, so no
        other sender takes them meanwhile (a sender that dies lets them go after that)."""
        ...

    def update_mail(self, mail_id: str, **values: object) -> None:
        """Set a mail's columns (status, attempts, next_attempt_at, last_error, body, sent_at, ...)."""
        ...

    def add_token(self, *, user_id: str, purpose: str, token_hash: str, email: str, ttl_s: float) -> LinkToken:
        """Insert a link token (only its hash) expiring after ttl_s."""
        ...

    def token_by_hash(self, token_hash: str, *, lock: bool = False) -> LinkToken | None:
        """The token with this hash, used or not (row-locked with lock, where the engine locks rows)."""
        ...

    def use_tokens(self, user_id: str, purpose: str) -> int:
        """Mark every unused token of an account and purpose used (one link used, the others stop too)."""
        ...

    def last_token_at(self, user_id: str, purpose: str) -> float | None:
        """When the account's newest token of this purpose was made."""
        ...

    def prune_tokens(self, before: float) -> int:
        """Delete tokens that expired before `before`; how many."""
        ...

    def prefs(self, user_id: str) -> MailPrefs | None:
        """An account's preferences row (None: defaults, never verified)."""
        ...

    def set_prefs(self, user_id: str, **values: object) -> MailPrefs:
        """Create or update an account's preferences row."""
        ...

    def opted_in_job_mail(self, user_ids: Sequence[str]) -> dict[str, str]:
        """{user id: e-mail} of those enabled accounts that asked for a mail when a job finishes."""
        ...

    def credits_low_due(self, threshold: int, limit: int = 500) -> list[tuple[str, str, int]]:
        """(user id, e-mail, balance) of enabled accounts below the threshold that still have a notice due
        (armed, not turned off); accounts without a preferences row count as armed."""
        ...

    def rearm_credits_low(self, threshold: int) -> int:
        """Arm again the notice of accounts back at or above the threshold; how many."""
        ...
