"""Accounts, sign-in, refresh rotation and API keys."""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from reelforge import errors
from reelforge.adapters import auth as crypto
from reelforge.config import Settings
from reelforge.domain import scopes as scope_rules
from reelforge.domain.records import ApiKey, RefreshToken, User, new_signing_secret
from reelforge.domain.types import CreditKind, Principal, Role, login_backoff_s
from reelforge.ports.identity import ExternalClaims, TokenVerifier
from reelforge.ports.repositories import DuplicateKey, Store, UnitOfWork
from reelforge.ports.secrets import SecretBox
from reelforge.services.ownership import owned

log = logging.getLogger("reelforge.auth")

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
API_KEY_PREFIX = "rf_"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True)
class NewApiKey:
    key: ApiKey
    secret: str


class AuthService:
    def __init__(self, store: Store, settings: Settings, box: SecretBox, *, audit: Any = None,
                 oidc: TokenVerifier | None = None, apps: Collection[str] = ()) -> None:
        self.store = store
        self.settings = settings
        self.box = box  # seals the account's callback signing secret
        self._principal_listeners: list[Callable[[str], None]] = []
        # Called inside the transaction that creates an account (the verification mail is queued with it).
        self.on_register: list[Callable[[UnitOfWork, User], None]] = []
        # Called inside the transaction that changes a signed-in account's password (the notice is queued with it).
        self.on_password_changed: list[Callable[[UnitOfWork, User], None]] = []
        self.audit = audit  # services.audit.AuditService, or None (then nothing is recorded)
        self.oidc = oidc  # the external issuer's verifier, when one is configured
        self.apps = frozenset(apps)  # installed applications: what `app:<name>` scopes may name

    def _audit(self, action: str, **kw: Any) -> None:
        if self.audit is not None:
            self.audit.record(action, **kw)

    # --- change notices (principal caches) ---------------------------------------------------
    def on_principal_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(user_id)` after anything that changes who a token resolves to (a key revoked, an
        account disabled or its role changed), once the change is committed. In this process only."""
        self._principal_listeners.append(listener)

    def _principal_changed(self, user_id: str) -> None:
        for listener in list(self._principal_listeners):
            listener(user_id)

    def principal_changed(self, user_id: str) -> None:
        """Tell the principal caches that an account changed (another service changed it: its deletion)."""
        self._principal_changed(user_id)

    # --- accounts --------------------------------------------------------------------------
    def register(self, email: str, password: str, *, role: Role = Role.user, grant: int | None = None) -> User:
        """Create an account with the starting credit grant. Emails are unique, case-insensitively."""
        email = self._normalize_email(email)
        self.check_password(password)
        pw_hash = crypto.hash_password(password)
        amount = self.settings.credits.starting_grant if grant is None else grant
        try:
            with self.store.tx() as tx:
                user = tx.accounts.add_user(email=email, password_hash=pw_hash, role=role.value,
                                            webhook_secret=self.box.seal(new_signing_secret()))
                if amount:
                    tx.credits.credit(user.id, amount, CreditKind.grant, note="starting grant")
                    user = replace(user, credits=amount)
                # For in-process consumers (the CRM sync) and the account's own subscriptions.
                tx.events.emit("account.created", {"account_id": user.id, "email": user.email, "role": user.role},
                               owner_id=user.id, subject_id=user.id)
                for hook in self.on_register:
                    hook(tx, user)
        except DuplicateKey as exc:
            raise errors.Conflict("An account with this email exists", code="email_taken", field="email") from exc
        return user

    def sign_up(self, email: str, password: str) -> str:
        """Self-service registration: `register`, except that an address with an account already is no error.

        The caller is told the same either way (the normalized address), so registration cannot be used to
        find out who has an account. The existing account is left as it is. Both paths hash the password and
        try the insert, so they also take about the same time.
        """
        try:
            return self.register(email, password).email
        except errors.Conflict:
            log.info("registration for an address that has an account; nothing changed")
            return self._normalize_email(email)

    @staticmethod
    def check_password(password: str, field: str = "password") -> None:
        """Refuse passwords that are too short or too long (`weak_password`) or among the most common ones
        (`password_too_common`): the first guesses of anyone trying passwords against an account."""
        if len(password) < 8:
            raise errors.ValidationFailed("Password must have at least 8 characters", code="weak_password",
                                          field=field)
        if len(password) > 1024:
            raise errors.ValidationFailed("Password too long", code="weak_password", field=field)
        if crypto.is_common_password(password):
            raise errors.ValidationFailed("This password is one of the most common ones; choose another",
                                          code="password_too_common", field=field)

    def change_password(self, principal: Principal, current_password: str, new_password: str) -> TokenPair:
        """Replace the caller's password. The current one is checked (and throttled like a sign-in); every
        refresh token of the account is revoked, so other sessions end at their access token's expiry, and
        a new pair for this session is returned. API keys are separate credentials and stay valid."""
        self.check_password(new_password, field="new_password")
        throttle_key = crypto.sha256_hex(principal.email)
        self._count_attempt(throttle_key)
        with self.store.tx(write=False) as tx:
            user = tx.accounts.user(principal.user_id)
        if user is None or user.disabled:
            raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
        if not crypto.verify_password(user.password_hash, current_password):
            raise errors.Forbidden("The current password is wrong", code="wrong_password", field="current_password")
        pw_hash = crypto.hash_password(new_password)
        with self.store.tx() as tx:
            tx.accounts.clear_login_throttle(throttle_key)
            user = tx.accounts.update_user(user.id, password_hash=pw_hash) or user
            tx.accounts.revoke_user_refresh(user.id)
            pair = self._issue_in(tx, user, family_id=None)
            for hook in self.on_password_changed:
                hook(tx, user)
        self._principal_changed(user.id)
        self._audit("auth.password_changed", actor=principal, target_type="user", target_id=user.id)
        return pair

    @staticmethod
    def _normalize_email(email: str) -> str:
        email = email.strip().lower()
        if not EMAIL_RE.match(email):
            raise errors.ValidationFailed("Not a valid email address", code="invalid_email", field="email")
        return email

    def login(self, email: str, password: str) -> TokenPair:
        """Tokens for a right e-mail and password. Failures are throttled per address (`_count_attempt`)."""
        email = email.strip().lower()
        throttle_key = crypto.sha256_hex(email)
        self._count_attempt(throttle_key)
        with self.store.tx(write=False) as tx:
            user = tx.accounts.user_by_email(email)
        ok = crypto.verify_password(user.password_hash if user else None, password)
        if not user or not ok:
            self._audit("auth.sign_in_failed", target_type="user", target_id=user.id if user else None,
                        details={"reason": "invalid_credentials", "email_sha256": throttle_key[:16]})
            raise errors.Unauthorized("Wrong email or password", code="invalid_credentials")
        with self.store.tx() as tx:
            tx.accounts.clear_login_throttle(throttle_key)
        if user.disabled:
            self._audit("auth.sign_in_failed", target_type="user", target_id=user.id,
                        details={"reason": "account_disabled"})
            raise errors.Unauthorized("Account disabled", code="account_disabled")
        self._audit("auth.sign_in", actor=user.id, target_type="user", target_id=user.id,
                    details={"method": "password"})
        return self._issue(user)

    def _count_attempt(self, key: str) -> None:
        """Count a sign-in attempt for an address as a failure before the password is checked (a success
        clears it), or refuse it with 429 `login_throttled` while the address waits out its backoff.

        Counting first, under the row's lock, means parallel guesses cannot all slip in before the first
        failure is written. Unknown addresses are counted alike, so the answer never tells whether an account
        exists. The wait is capped (`auth.login_backoff_max_s`): an attacker can delay the owner's sign-in,
        never lock them out for good.
        """
        a = self.settings.auth
        with self.store.tx() as tx:
            row = tx.accounts.lock_login_throttle(key)
            now = tx.now()
            if row.locked_until > now:
                raise errors.RateLimited("Too many failed sign-ins for this e-mail address; try again later",
                                         code="login_throttled", retry_after=max(1, math.ceil(row.locked_until - now)))
            failures = (row.failures if now - row.updated_at < a.login_failure_window_s else 0) + 1
            wait = login_backoff_s(failures, a.login_free_failures, a.login_backoff_base_s, a.login_backoff_max_s)
            tx.accounts.set_login_throttle(key, failures=failures, locked_until=now + wait if wait else 0.0)

    def prune_login_throttles(self) -> int:
        """Forget addresses with no failed sign-in for `auth.login_failure_window_s` (the sweeper runs it)."""
        with self.store.tx() as tx:
            return tx.accounts.prune_login_throttles(tx.now() - self.settings.auth.login_failure_window_s)

    def _issue(self, user: User) -> TokenPair:
        """A new pair for a sign-in: its refresh token starts a new family."""
        with self.store.tx() as tx:
            return self._issue_in(tx, user, family_id=None)

    def _issue_in(self, tx: UnitOfWork, user: User, *, family_id: str | None) -> TokenPair:
        refresh = crypto.new_secret_token("rft_")
        tok = tx.accounts.add_refresh(user_id=user.id, token_hash=crypto.sha256_hex(refresh),
                                      ttl_s=self.settings.auth.refresh_ttl_s, family_id=family_id)
        # The access token names its session (`sid`): signing a session out ends its access tokens too.
        access, ttl = crypto.issue_access_token(
            secret=self.settings.jwt_secret, issuer=self.settings.auth.jwt_issuer, user_id=user.id,
            role=user.role, ttl_s=self.settings.auth.access_ttl_s, session_id=tok.family_id,
        )
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=ttl)

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the old refresh token is revoked as the new pair is issued, in one transaction.

        A refresh token that was already rotated and comes back was copied: the thief or the owner will
        present the newer one next. Every token of its family (the sign-in it descends from) is revoked then,
        so both must sign in again (OAuth 2.0 Security BCP, refresh token rotation).
        """
        token_hash = crypto.sha256_hex(refresh_token)
        replayed: RefreshToken | None = None
        pair: TokenPair | None = None
        with self.store.tx() as tx:
            tok = tx.accounts.take_refresh(token_hash)
            if tok is None:
                seen = tx.accounts.refresh_by_hash(token_hash)
                if seen is not None and seen.revoked_at is not None:
                    tx.accounts.revoke_refresh_family(seen.family_id)
                    replayed = seen
            else:
                user = tx.accounts.user(tok.user_id)
                if user is not None and not user.disabled:
                    # Same transaction as the take: a concurrent replay waits for it, then revokes this one too.
                    pair = self._issue_in(tx, user, family_id=tok.family_id)
        if replayed is not None:
            log.warning("refresh token replayed: revoked its family %s (account %s)", replayed.family_id,
                        replayed.user_id)
        if pair is None:
            raise errors.Unauthorized("Invalid or expired refresh token", code="invalid_refresh_token")
        return pair

    def revoke_refresh(self, refresh_token: str) -> None:
        """Sign out: the refresh token stops working (an unknown or spent one is ignored)."""
        with self.store.tx() as tx:
            tx.accounts.take_refresh(crypto.sha256_hex(refresh_token))

    # --- authentication ---------------------------------------------------------------------
    def authenticate(self, bearer: str) -> Principal:
        """Resolve `Authorization: Bearer ...` (a JWT or an `rf_` API key) to a principal."""
        if bearer.startswith(API_KEY_PREFIX):
            return self._authenticate_key(bearer)
        if self.oidc is not None and self.oidc.handles(bearer):
            return self._authenticate_external(self.oidc.verify(bearer))
        claims = crypto.decode_access_token(bearer, secret=self.settings.jwt_secret,
                                            issuer=self.settings.auth.jwt_issuer,
                                            # Longer-lived tokens are not ours (after a TTL cut: refreshed).
                                            max_ttl_s=self.settings.auth.access_ttl_s)
        sid = claims.get("sid")
        with self.store.tx(write=False) as tx:
            user = tx.accounts.user(str(claims["sub"]))
            live = sid is None or user is None or tx.accounts.session_live(user.id, str(sid))
        if user is None or user.disabled:
            raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
        if not live:
            raise errors.Unauthorized("This session was signed out", code="session_revoked")
        return Principal(user_id=user.id, email=user.email, role=Role(user.role), via="jwt")

    @staticmethod
    def session_of(bearer: str) -> str | None:
        """The session (`sid`) an access token names, read without checking it again: call it only with a
        bearer that authenticated this request. None for API keys and tokens without one."""
        if bearer.startswith(API_KEY_PREFIX):
            return None
        sid = crypto.unverified_claims(bearer).get("sid")
        return sid if isinstance(sid, str) else None

    # --- sessions ------------------------------------------------------------------------------
    def sessions(self, principal: Principal) -> list[tuple[str, float, float, float]]:
        """The caller's signed-in sessions: (id, started, last refreshed, expires), most recently active first."""
        with self.store.tx(write=False) as tx:
            return tx.accounts.sessions(principal.user_id)

    def end_session(self, principal: Principal, session_id: str) -> None:
        """Sign one of the caller's sessions out (its refresh token and its access tokens stop working)."""
        with self.store.tx() as tx:
            if session_id not in {s[0] for s in tx.accounts.sessions(principal.user_id)}:
                raise errors.NotFound("Session not found", code="session_not_found")
            tx.accounts.revoke_refresh_family(session_id)
        self._principal_changed(principal.user_id)

    def end_other_sessions(self, principal: Principal, keep: str | None) -> int:
        """Sign out every session of the caller but `keep` (the calling one); how many ended."""
        with self.store.tx() as tx:
            ended = 0
            for family_id, *_ in tx.accounts.sessions(principal.user_id):
                if family_id != keep:
                    ended += 1 if tx.accounts.revoke_refresh_family(family_id) else 0
        self._principal_changed(principal.user_id)
        return ended

    def _authenticate_key(self, raw: str) -> Principal:
        try:
            _, prefix, _secret = raw.split("_", 2)
        except ValueError as exc:
            raise errors.Unauthorized("Malformed API key", code="invalid_api_key") from exc
        with self.store.tx(write=False) as tx:
            key = tx.accounts.api_key_by_prefix(prefix)
            user = tx.accounts.user(key.owner_id) if key else None
        if (key is None or user is None or key.revoked_at is not None
                or not crypto.constant_time_equal(key.key_hash, crypto.sha256_hex(raw))):
            raise errors.Unauthorized("Invalid or revoked API key", code="invalid_api_key")
        if user.disabled:
            raise errors.Unauthorized("Account disabled", code="account_disabled")
        # last_used_at is informative: refresh it at most once a minute, not a write on every request.
        if key.last_used_at is None or time.time() - key.last_used_at > 60:
            with self.store.tx() as tx:
                tx.accounts.touch_api_key(key.id)
        return Principal(user_id=user.id, email=user.email, role=Role(user.role), via="api_key",
                         scopes=frozenset(key.scopes) if key.scopes is not None else None)

    # --- external identities (OIDC) ---------------------------------------------------------------
    def _authenticate_external(self, claims: ExternalClaims) -> Principal:
        """The account an external identity maps to; mapped on its first use (see `_link`)."""
        with self.store.tx(write=False) as tx:
            ident = tx.account_data.identity(claims.issuer, claims.subject)
            user = tx.accounts.user(ident.user_id) if ident is not None else None
        if ident is None:
            user = self._link(claims)
        if user is None:
            raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
        if user.disabled:
            raise errors.Unauthorized("Account disabled", code="account_disabled")
        return Principal(user_id=user.id, email=user.email, role=Role(user.role), via="oidc")

    def _link(self, claims: ExternalClaims) -> User:
        """Map a new external identity: to the account with its e-mail address when the issuer says the address is
        verified (and `oidc.link_verified_email`), else to a new account. An unverified address is never used:
        whoever controls an issuer account could otherwise claim someone else's address here."""
        cfg = self.settings.oidc
        created = False
        try:
            with self.store.tx() as tx:
                user = None
                verified = claims.email if claims.email_verified and claims.email else None
                if verified and cfg.link_verified_email:
                    user = tx.accounts.user_by_email(verified)
                if user is None:
                    if not cfg.create_accounts:
                        raise errors.Unauthorized("No account for this identity", code="identity_not_linked")
                    email = verified or f"oidc-{crypto.sha256_hex(claims.issuer + chr(0) + claims.subject)[:24]}" \
                        "@users.invalid"
                    user = tx.accounts.add_user(email=email, password_hash="", role=Role.user.value,
                                                webhook_secret=self.box.seal(new_signing_secret()))
                    grant = self.settings.credits.starting_grant
                    if grant:
                        tx.credits.credit(user.id, grant, CreditKind.grant, note="starting grant")
                        user = replace(user, credits=grant)
                    created = True
                tx.account_data.add_identity(issuer=claims.issuer, subject=claims.subject, user_id=user.id,
                                             email=claims.email)
        except DuplicateKey:
            # Another request mapped the identity first (or took the address): use what it wrote.
            with self.store.tx(write=False) as tx:
                ident = tx.account_data.identity(claims.issuer, claims.subject)
                found = tx.accounts.user(ident.user_id) if ident is not None else None
            if found is None:
                raise errors.Unauthorized("Could not map this identity to an account", code="invalid_token") from None
            return found
        self._audit("auth.identity_linked", actor=user.id, target_type="user", target_id=user.id,
                    details={"issuer": claims.issuer, "created": created})
        self._audit("auth.sign_in", actor=user.id, target_type="user", target_id=user.id,
                    details={"method": "oidc", "issuer": claims.issuer})
        return user

    # --- re-authentication ------------------------------------------------------------------------
    def reauthenticate(self, principal: Principal, *, password: str | None = None, token: str | None = None) -> None:
        """Prove, for a destructive action, that the caller is the account's owner now: its password, or a token
        for the account issued within `accounts.reauth_max_age_s` (ours or the OIDC issuer's; never an API key).
        403 `reauthentication_required` otherwise (`wrong_password` for a wrong password)."""
        max_age = self.settings.accounts.reauth_max_age_s
        if password:
            throttle_key = crypto.sha256_hex(principal.email)
            self._count_attempt(throttle_key)
            with self.store.tx(write=False) as tx:
                user = tx.accounts.user(principal.user_id)
            if user is None or not crypto.verify_password(user.password_hash or None, password):
                raise errors.Forbidden("The password is wrong", code="wrong_password", field="password")
            with self.store.tx() as tx:
                tx.accounts.clear_login_throttle(throttle_key)
            return
        if token and not token.startswith(API_KEY_PREFIX):
            try:
                if self.oidc is not None and self.oidc.handles(token):
                    claims = self.oidc.verify(token)
                    with self.store.tx(write=False) as tx:
                        ident = tx.account_data.identity(claims.issuer, claims.subject)
                    owner, issued = (ident.user_id if ident else None), claims.issued_at
                else:
                    local = crypto.decode_access_token(token, secret=self.settings.jwt_secret,
                                                       issuer=self.settings.auth.jwt_issuer,
                                                       max_ttl_s=self.settings.auth.access_ttl_s)
                    owner, issued = str(local["sub"]), float(local["iat"])
            except errors.Unauthorized:
                owner, issued = None, None
            if owner == principal.user_id and issued is not None and time.time() - issued <= max_age:
                return
        raise errors.Forbidden(f"Confirm with your password, or a token issued in the last {int(max_age)} s",
                               code="reauthentication_required")

    def me(self, principal: Principal) -> User:
        """The caller's own account."""
        with self.store.tx(write=False) as tx:
            user = tx.accounts.user(principal.user_id)
        if user is None:
            raise errors.Unauthorized("Account not found or disabled", code="invalid_token")
        return user

    # --- API keys -------------------------------------------------------------------------------
    def create_api_key(self, principal: Principal, name: str, scopes: Collection[str] | None = None) -> NewApiKey:
        """A key is shown once; only its sha256 is kept (it has 256 random bits, so a slow hash adds nothing).

        `scopes` limits the key (domain/scopes.py; None: full access). A caller authenticated by a limited key
        can only make keys that allow no more than its own."""
        clean: list[str] | None = None
        if scopes is not None:
            try:
                clean = scope_rules.normalize(scopes, self.apps)
            except scope_rules.ScopeError as exc:
                raise errors.ValidationFailed(f"Invalid scopes: {exc}", code="invalid_scope", field="scopes") from exc
        if not scope_rules.within(clean, principal.scopes):
            raise errors.Forbidden("A key cannot make a key with more scopes than its own", code="scope_escalation")
        prefix = secrets.token_hex(6)
        raw = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        with self.store.tx() as tx:
            key = tx.accounts.add_api_key(owner_id=principal.user_id, name=name.strip()[:200] or "key", prefix=prefix,
                                          key_hash=crypto.sha256_hex(raw), scopes=clean)
            self._audit("key.created", actor=principal, target_type="api_key", target_id=key.id,
                        subject_id=principal.user_id, details={"name": key.name, "scopes": clean}, tx=tx)
        return NewApiKey(key=key, secret=raw)

    def list_api_keys(self, principal: Principal) -> list[ApiKey]:
        with self.store.tx(write=False) as tx:
            return list(tx.accounts.api_keys(principal.user_id))

    def revoke_api_key(self, principal: Principal, key_id: str) -> ApiKey:
        with self.store.tx() as tx:
            key = owned(tx.accounts.api_key(key_id), principal, "API key")
            if key.revoked_at is None:
                key = tx.accounts.revoke_api_key(key.id) or key
                self._audit("key.revoked", actor=principal, target_type="api_key", target_id=key.id,
                            subject_id=principal.user_id, details={"name": key.name}, tx=tx)
        self._principal_changed(principal.user_id)
        return key

    # --- admin ------------------------------------------------------------------------------
    def ensure_admin(self, email: str) -> str | None:
        """Create the admin account on first start; returns the generated password once, else None."""
        with self.store.tx(write=False) as tx:
            if tx.accounts.user_by_email(email.lower()) is not None:
                return None
        password = secrets.token_urlsafe(18)
        try:
            self.register(email, password, role=Role.admin)
        except errors.Conflict:
            return None
        return password

    def list_users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        with self.store.tx(write=False) as tx:
            return list(tx.accounts.users(limit=limit, offset=offset))

    def set_user(self, user_id: str, *, role: Role | None = None, disabled: bool | None = None,
                 actor: Principal | None = None) -> User:
        values: dict[str, object] = {}
        if role is not None:
            values["role"] = role.value
        if disabled is not None:
            values["disabled"] = disabled
        with self.store.tx() as tx:
            before = tx.accounts.user(user_id, lock=True)
            user = tx.accounts.update_user(user_id, **values)
            if user is None or before is None:
                raise errors.NotFound("User not found", code="user_not_found")
            if role is not None and before.role != user.role:
                self._audit("user.role_changed", actor=actor, target_type="user", target_id=user_id,
                            details={"from": before.role, "to": user.role}, tx=tx)
            if disabled is not None and before.disabled != user.disabled:
                self._audit("user.disabled" if user.disabled else "user.enabled", actor=actor, target_type="user",
                            target_id=user_id, tx=tx)
        self._principal_changed(user_id)
        return user
