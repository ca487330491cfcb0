"""E-mail: verification and password reset by single-use links, notices (job finished, credits low, receipts,
alarms), and the queue the workers send them from.

A mail is written to the mail queue (`mails`) in the transaction of the change that causes it: a registration, a
reset request, or an outbox event handled as the outbox is fanned out (`on_events`). The workers' maintenance
sends due mails (`dispatch`): a sender claims a batch for a while, hands each to the provider, and records the
answer; a crash before that leaves the mail to be claimed again after the hold, so every mail is sent at least
once, and a transient failure is retried with backoff until `mail.max_attempts`. Link tokens are 256 random
bits; only their sha256 is stored, and the mail body that carries the link is sealed at rest and emptied once
sent. See docs/architecture.md, "Mail".
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from reelforge import errors
from reelforge.config import Settings
from reelforge.domain.mail import (
    TOKEN_PREFIX,
    LinkToken,
    Mail,
    MailStatus,
    Message,
    TokenPurpose,
    render,
    retry_delay_s,
)
from reelforge.domain.records import OutboxEvent, User
from reelforge.domain.types import Principal
from reelforge.ports.mail import MailSender, MailSendError
from reelforge.ports.repositories import Store, UnitOfWork
from reelforge.ports.secrets import SecretBox

log = logging.getLogger("reelforge.mail")

CREDITS_LOW_SCHEDULE = "mail.credits_low"
# Console pages the links open; the token travels in the fragment, which browsers send to no server (no access
# log, no Referer holds it).
VERIFY_PAGE = "/account/verify"
RESET_PAGE = "/account/reset"
PURCHASE_EVENT = "billing.purchase.completed"
JOB_EVENTS = ("job.succeeded", "job.failed")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class MailService:
    def __init__(self, store: Store, settings: Settings, sender: MailSender, box: SecretBox, *,
                 hash_password: Callable[[str], str], check_password: Callable[[str, str], None],
                 normalize_email: Callable[[str], str],
                 principal_changed: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.sender = sender
        self.box = box  # seals mail bodies at rest
        # Password rules and hashing are the auth service's; they are handed in so both use the same.
        self.hash_password = hash_password
        self.check_password = check_password
        self.normalize_email = normalize_email
        self.principal_changed = principal_changed or (lambda _user_id: None)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pass: Future[int] | None = None

    @property
    def cfg(self) -> Any:
        return self.settings.mail

    # --- the queue -------------------------------------------------------------------------------------------
    def enqueue(self, tx: UnitOfWork, kind: str, to: str, data: dict[str, Any], *, user_id: str | None = None,
                dedupe_key: str | None = None) -> bool:
        """Queue a mail of `kind` inside the caller's transaction; False when its dedupe key was queued before."""
        subject, text, html = render(kind, data, self.cfg.product_name)
        body = self.box.seal(json.dumps({"text": text, "html": html}))
        return tx.mail.add_mail(kind=kind, to_addr=to, subject=subject, body=body, user_id=user_id,
                                dedupe_key=dedupe_key)

    def url(self, path: str) -> str:
        return self.settings.public_url.rstrip("/") + path

    def dispatch(self, runner: str = "") -> None:
        """One pass of a worker's maintenance: start a send pass on this process's sender thread unless one is
        running, and check balances for "credits low" when that is due. Returns at once."""
        with self._lock:
            if self._pass is not None and not self._pass.done():
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reelforge-mail")
            try:
                self._pass = self._pool.submit(self._background_pass, runner)
            except RuntimeError:  # shutting down
                self._pass = None

    def _background_pass(self, runner: str) -> int:
        try:
            if self.cfg.credits_low_threshold > 0:
                with self.store.tx() as tx:
                    due = tx.ops.try_schedule(CREDITS_LOW_SCHEDULE, self.cfg.credits_low_interval_s,
                                              runner or "mail")
                if due:
                    self.check_credits_low()
            return self.send_due()
        except Exception:
            log.exception("mail pass failed")
            return 0

    def close(self) -> None:
        """Let the pass in flight finish and stop the sender thread."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def send_due(self, limit: int | None = None) -> int:
        """Send the mails that are due (at most `limit`, default `mail.batch`); returns how many were handled."""
        cfg = self.cfg
        # Held past the longest a send can take: a sender that dies lets its mails go after that.
        hold_s = max(cfg.smtp_timeout_s, cfg.sendgrid_timeout_s) * 2 + 30
        with self.store.tx() as tx:
            claimed = tx.mail.claim_mails(limit or cfg.batch, hold_s)
        for mail in claimed:
            self._send(mail)
        return len(claimed)

    def _send(self, mail: Mail) -> None:
        cfg = self.cfg
        if not self.sender.delivers:
            log.info("mail %s (%s) not sent: mail.provider is none", mail.id, mail.kind)
            with self.store.tx() as tx:
                tx.mail.update_mail(mail.id, status=MailStatus.skipped, body="", provider=self.sender.name,
                                    last_error="not sent: mail.provider is none")
            return
        try:
            content = json.loads(self.box.open(mail.body))
            message = Message(id=mail.id, to=mail.to_addr, sender=cfg.from_address, subject=mail.subject,
                              text=content["text"], html=content.get("html", ""), reply_to=cfg.reply_to)
            provider_id = self.sender.send(message)
        except errors.SecretUnreadable:
            self._failed(mail, "the mail body does not decrypt with this instance's secret", permanent=True)
        except MailSendError as exc:
            self._failed(mail, str(exc), permanent=exc.permanent)
        except Exception as exc:  # a bug in an adapter: retried like a transient failure, and logged
            log.exception("mail %s: the %s sender failed", mail.id, self.sender.name)
            self._failed(mail, f"{type(exc).__name__}", permanent=False)
        else:
            with self.store.tx() as tx:
                tx.mail.update_mail(mail.id, status=MailStatus.sent, attempts=mail.attempts + 1, body="",
                                    sent_at=tx.now(), provider=self.sender.name,
                                    provider_id=(provider_id or "")[:255] or None, last_error=None)
            log.info("mail %s (%s) sent by %s", mail.id, mail.kind, self.sender.name)

    def _failed(self, mail: Mail, reason: str, *, permanent: bool) -> None:
        cfg = self.cfg
        attempts = mail.attempts + 1
        with self.store.tx() as tx:
            if permanent or attempts >= cfg.max_attempts:
                tx.mail.update_mail(mail.id, status=MailStatus.failed, attempts=attempts, last_error=reason[:1000],
                                    provider=self.sender.name)
                log.warning("mail %s (%s) failed for good after %d attempts: %s", mail.id, mail.kind, attempts,
                            reason)
            else:
                delay = retry_delay_s(attempts, cfg.retry_base_s, cfg.retry_max_s)
                tx.mail.update_mail(mail.id, attempts=attempts, next_attempt_at=tx.now() + delay,
                                    last_error=reason[:1000], provider=self.sender.name)
                log.info("mail %s (%s) attempt %d failed, retried in %.0f s: %s", mail.id, mail.kind, attempts,
                         delay, reason)

    # --- link tokens -----------------------------------------------------------------------------------------
    def _new_link(self, tx: UnitOfWork, user: User, purpose: TokenPurpose, ttl_s: float) -> str:
        raw = TOKEN_PREFIX[purpose] + secrets.token_urlsafe(32)
        tx.mail.add_token(user_id=user.id, purpose=purpose.value, token_hash=token_hash(raw), email=user.email,
                          ttl_s=ttl_s)
        return raw

    def _check_link(self, tx: UnitOfWork, raw: str, purpose: TokenPurpose) -> tuple[LinkToken, User]:
        """The token and its account, or 400 `invalid_mail_token` (unknown, forged, used, or for an address the
        account no longer has) / 410 `mail_token_expired`."""
        raw = raw.strip()
        invalid = errors.BadRequest("This link is not valid or was already used; ask for a new one",
                                    code="invalid_mail_token", field="token")
        if not raw.startswith(TOKEN_PREFIX[purpose]):
            raise invalid
        tok = tx.mail.token_by_hash(token_hash(raw), lock=True)
        if tok is None or tok.purpose != purpose.value or tok.used_at is not None:
            raise invalid
        user = tx.accounts.user(tok.user_id)
        if user is None or user.disabled or user.email != tok.email:
            raise invalid
        if tok.expires_at <= tx.now():
            raise errors.Gone("This link has expired; ask for a new one", code="mail_token_expired", field="token")
        return tok, user

    # --- verification ------------------------------------------------------------------------------------------
    def on_register(self, tx: UnitOfWork, user: User) -> None:
        """Called by registration inside its transaction: queue the verification mail with the account."""
        if self.cfg.verify_on_register:
            self._verification_mail(tx, user)

    def _verification_mail(self, tx: UnitOfWork, user: User) -> None:
        raw = self._new_link(tx, user, TokenPurpose.verify_email, self.cfg.verify_ttl_s)
        self.enqueue(tx, "verify_email", user.email, {
            "email": user.email, "ttl_s": self.cfg.verify_ttl_s, "url": self.url(f"{VERIFY_PAGE}#token={quote(raw)}"),
        }, user_id=user.id)

    def resend_verification(self, principal: Principal) -> None:
        """A new verification link for the caller's address (409 `already_verified`; at most one per
        `mail.resend_interval_s`, else 429 `mail_throttled`). Earlier links keep working until they expire."""
        with self.store.tx() as tx:
            user = tx.accounts.user(principal.user_id, lock=True)
            if user is None:
                raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
            prefs = tx.mail.prefs(user.id)
            if prefs is not None and prefs.verified_email == user.email:
                raise errors.Conflict("This address is verified already", code="already_verified")
            last = tx.mail.last_token_at(user.id, TokenPurpose.verify_email.value)
            wait = (last + self.cfg.resend_interval_s - tx.now()) if last is not None else 0.0
            if wait > 0:
                raise errors.RateLimited("A verification mail was sent a moment ago; try again shortly",
                                         code="mail_throttled", retry_after=max(1, int(wait + 0.999)))
            self._verification_mail(tx, user)

    def verify_email(self, raw: str) -> str:
        """Use a verification link: the account's address is verified; returns it. Single use."""
        with self.store.tx() as tx:
            tok, user = self._check_link(tx, raw, TokenPurpose.verify_email)
            tx.mail.use_tokens(user.id, TokenPurpose.verify_email.value)
            tx.mail.set_prefs(user.id, verified_email=tok.email, verified_at=tx.now())
        return user.email

    # --- password reset ------------------------------------------------------------------------------------
    def forgot_password(self, email: str) -> None:
        """Mail a reset link when the address has an enabled account (at most one per `mail.resend_interval_s`).

        The caller is never told whether it has: both cases read the account, make and hash a token, and run one
        write transaction, and the answer is held until `mail.forgot_min_response_s` has passed, so neither the
        answer nor its timing says who is signed up.
        """
        started = time.monotonic()
        try:
            address = self.normalize_email(email)
            raw = TOKEN_PREFIX[TokenPurpose.reset_password] + secrets.token_urlsafe(32)
            hashed = token_hash(raw)
            with self.store.tx() as tx:
                user = tx.accounts.user_by_email(address)
                last = tx.mail.last_token_at(user.id if user else "", TokenPurpose.reset_password.value)
                now = tx.now()
                if (user is not None and not user.disabled
                        and (last is None or now - last >= self.cfg.resend_interval_s)):
                    tx.mail.add_token(user_id=user.id, purpose=TokenPurpose.reset_password.value, token_hash=hashed,
                                      email=user.email, ttl_s=self.cfg.reset_ttl_s)
                    self.enqueue(tx, "password_reset", user.email, {
                        "email": user.email, "ttl_s": self.cfg.reset_ttl_s,
                        "url": self.url(f"{RESET_PAGE}#token={quote(raw)}")}, user_id=user.id)
                else:
                    # The same shape of work, so the two cases cost the same: render and seal a mail body.
                    render("password_reset", {"email": address, "ttl_s": self.cfg.reset_ttl_s, "url": raw},
                           self.cfg.product_name)
                    self.box.seal(json.dumps({"text": raw}))
        finally:
            rest = self.cfg.forgot_min_response_s - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)

    def reset_password(self, raw: str, new_password: str) -> None:
        """Use a reset link: set the new password, end every session of the account (refresh tokens, and with
        them the access tokens that name a session), and mail the owner that the password changed."""
        self.check_password(new_password, "new_password")
        with self.store.tx(write=False) as tx:  # a forged token costs no password hash
            self._check_link(tx, raw, TokenPurpose.reset_password)
        pw_hash = self.hash_password(new_password)
        with self.store.tx() as tx:
            tok, user = self._check_link(tx, raw, TokenPurpose.reset_password)
            tx.accounts.update_user(user.id, password_hash=pw_hash)
            tx.mail.use_tokens(user.id, TokenPurpose.reset_password.value)
            tx.accounts.revoke_user_refresh(user.id)
            tx.accounts.clear_login_throttle(hashlib.sha256(user.email.encode()).hexdigest())
            # The link reached the owner's mailbox: that proves the address as a verification link would.
            tx.mail.set_prefs(user.id, verified_email=tok.email, verified_at=tx.now())
            self.enqueue(tx, "password_changed", user.email, {"email": user.email}, user_id=user.id)
        self.principal_changed(user.id)

    def password_changed(self, tx: UnitOfWork, user: User) -> None:
        """A signed-in password change: tell the address, in the change's transaction (a reset says so too)."""
        self.enqueue(tx, "password_changed", user.email, {"email": user.email}, user_id=user.id)

    # --- the account's mail settings ------------------------------------------------------------------------
    def status(self, principal: Principal) -> dict[str, Any]:
        """The caller's address, whether it is verified, and the notices it wants."""
        with self.store.tx(write=False) as tx:
            user = tx.accounts.user(principal.user_id)
            prefs = tx.mail.prefs(principal.user_id)
        if user is None:
            raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
        verified = prefs is not None and prefs.verified_email == user.email
        return {"email": user.email, "verified": verified,
                "verified_at": prefs.verified_at if prefs is not None and verified else None,
                "job_finished": bool(prefs.job_finished) if prefs else False,
                "credits_low": bool(prefs.credits_low) if prefs else True,
                "credits_low_threshold": self.cfg.credits_low_threshold,
                "provider": self.sender.name}

    def set_preferences(self, principal: Principal, *, job_finished: bool | None = None,
                        credits_low: bool | None = None) -> dict[str, Any]:
        """Turn the job-finished mail (opt-in) or the credits-low mail on or off."""
        values = {k: v for k, v in (("job_finished", job_finished), ("credits_low", credits_low)) if v is not None}
        if values:
            with self.store.tx() as tx:
                tx.mail.set_prefs(principal.user_id, **values)
        return self.status(principal)

    def mails(self, principal: Principal, limit: int = 50) -> list[Mail]:
        """The mails sent (or queued) to the caller's account, newest first."""
        with self.store.tx(write=False) as tx:
            return tx.mail.mails(user_id=principal.user_id, limit=limit)

    # --- notices ----------------------------------------------------------------------------------------------
    def on_events(self, tx: UnitOfWork, events: Sequence[OutboxEvent]) -> None:
        """Turn outbox events into mails, in the transaction that fans them out (so a mail is queued exactly when
        its event is handed on, and an event handled again queues nothing twice: each mail has a dedupe key)."""
        jobs = [ev for ev in events if ev.type in JOB_EVENTS and ev.owner_id]
        opted = tx.mail.opted_in_job_mail([str(ev.owner_id) for ev in jobs]) if jobs else {}
        for ev in events:
            try:
                if ev.type in JOB_EVENTS and ev.owner_id in opted:
                    self._job_mail(tx, ev, opted[str(ev.owner_id)])
                elif ev.type == PURCHASE_EVENT:
                    self._receipt(tx, ev)
                elif ev.type == "alarm.raised" and ev.owner_id and self.cfg.alarm_mails:
                    self._alarm_mail(tx, ev)
            except (KeyError, TypeError, ValueError):
                log.exception("outbox event %s (%s) could not be turned into a mail", ev.id, ev.type)

    def _job_mail(self, tx: UnitOfWork, ev: OutboxEvent, to: str) -> None:
        p = ev.payload or {}
        job_id = str(p.get("id") or ev.subject_id or "")
        error = p.get("error") or {}
        self.enqueue(tx, "job_finished", to, {
            "job_id": job_id, "kind": p.get("kind", ""), "status": ev.type.split(".", 1)[1],
            "error": error.get("message") if isinstance(error, dict) else None,
            "url": self.url(f"/jobs/{quote(job_id)}")}, user_id=str(ev.owner_id), dedupe_key=f"event:{ev.id}")

    def _receipt(self, tx: UnitOfWork, ev: OutboxEvent) -> None:
        p = ev.payload or {}
        account_id = str(p.get("account_id") or ev.owner_id or "")
        purchase_id = str(p["purchase_id"])
        user = tx.accounts.user(account_id) if account_id else None
        if user is None:
            log.warning("receipt for purchase %s: account %s not found", purchase_id, account_id)
            return
        self.enqueue(tx, "receipt", user.email, {
            "purchase_id": purchase_id, "credits": p.get("credits"), "amount": p.get("amount"),
            "currency": p.get("currency", ""), "url": self.url("/credits")},
            user_id=user.id, dedupe_key=f"receipt:{purchase_id}")

    def _alarm_mail(self, tx: UnitOfWork, ev: OutboxEvent) -> None:
        admin = tx.accounts.user(str(ev.owner_id))
        if admin is None or admin.disabled or admin.role != "admin":
            return
        p = ev.payload or {}
        self.enqueue(tx, "alarm", admin.email, {
            "key": p.get("key", ""), "rule": p.get("rule", ""), "message": p.get("message", ""),
            "value": p.get("value"), "threshold": p.get("threshold"), "url": self.url("/admin/system")},
            user_id=admin.id, dedupe_key=f"event:{ev.id}")

    def check_credits_low(self) -> int:
        """Queue "credits low" for each account that fell below `mail.credits_low_threshold` since its last
        notice, and arm the notice again for those back at or above it. Returns the mails queued."""
        threshold = self.cfg.credits_low_threshold
        if threshold <= 0:
            return 0
        with self.store.tx() as tx:
            tx.mail.rearm_credits_low(threshold)
            due = tx.mail.credits_low_due(threshold)
            for user_id, email, balance in due:
                tx.mail.set_prefs(user_id, credits_low_armed=False)
                self.enqueue(tx, "credits_low", email, {"balance": balance, "threshold": threshold,
                                                         "url": self.url("/credits")}, user_id=user_id)
        return len(due)

    def prune(self) -> int:
        """Forget link tokens a day after they expired (the sweeper runs it)."""
        with self.store.tx() as tx:
            return tx.mail.prune_tokens(tx.now() - 86400)
