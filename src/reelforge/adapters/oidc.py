"""Tokens of an external OpenID Connect issuer (Amazon Cognito or any other), verified against its JWKS.

The keys come from the issuer's JWKS document (found through its discovery document unless configured), are
kept for `jwks_cache_s`, and are fetched again when a token names a key id the set does not hold: that is how a
key rotation reaches us. Such refetches happen at most once per `jwks_min_refresh_s`, so tokens with made-up key
ids cannot make us hammer the issuer. Algorithms are pinned to the configured asymmetric ones: a token's header
never picks HS256 (which would verify with the public key as an HMAC secret) or "none".
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any

import httpx
import jwt

from reelforge import errors
from reelforge.ports.identity import ExternalClaims

log = logging.getLogger("reelforge.auth")

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})


def _invalid(detail: str = "Invalid token") -> errors.Unauthorized:
    return errors.Unauthorized(detail, code="invalid_token")


class JwksCache:
    """The issuer's signing keys by key id, fetched on first use, again after `cache_s`, and on an unknown key
    id (at most once per `min_refresh_s`)."""

    def __init__(self, *, jwks_url: str, discovery_url: str, issuer: str, cache_s: float, min_refresh_s: float,
                 timeout_s: float, algorithms: frozenset[str]) -> None:
        self.jwks_url = jwks_url
        self.discovery_url = discovery_url
        self.issuer = issuer
        self.cache_s = cache_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self.algorithms = algorithms
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = -math.inf  # monotonic
        self._tried_at = -math.inf
        self._lock = threading.Lock()
        self.fetches = 0  # for tests and metrics: how many times the JWKS document was read

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        now = time.monotonic()
        if now - self._fetched_at > self.cache_s:
            self._refresh(force=True)
        found = self._find(kid)
        if found is None and time.monotonic() - self._tried_at >= self.min_refresh_s:
            self._refresh(force=False)
            found = self._find(kid)
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys
        if kid is None:
            # A token without a key id is accepted only while the issuer publishes a single key.
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def _refresh(self, *, force: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._tried_at < self.min_refresh_s:
                return  # another thread has just fetched
            if force and now - self._fetched_at <= self.cache_s:
                return
            self._tried_at = now
            try:
                keys = self._fetch()
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning("could not fetch the OIDC issuer's keys: %s", exc)
                if not self._keys:
                    raise errors.ServiceUnavailable("The sign-in provider's keys cannot be fetched right now",
                                                    code="oidc_unavailable") from exc
                return  # keep serving the keys we have
            self._keys = keys
            self._fetched_at = now
            self.fetches += 1

    def _get_json(self, client: httpx.Client, url: str) -> Any:
        r = client.get(url, headers={"Accept": "application/json"})
        r.raise_for_status()
        if len(r.content) > 1024 * 1024:
            raise ValueError("document too large")
        return json.loads(r.content)

    def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            url = self.jwks_url
            if not url:
                doc = self._get_json(client, self.discovery_url)
                if doc.get("issuer") != self.issuer:
                    raise ValueError("the discovery document names another issuer")
                url = str(doc["jwks_uri"])
            jwks = self._get_json(client, url)
        keys: dict[str | None, jwt.PyJWK] = {}
        for raw in jwks.get("keys", []):
            if not isinstance(raw, dict) or raw.get("use", "sig") != "sig" or raw.get("kty") not in ("RSA", "EC"):
                continue
            alg = raw.get("alg")
            if alg is not None and alg not in self.algorithms:
                continue
            try:
                key = jwt.PyJWK(raw, algorithm=alg or ("ES256" if raw["kty"] == "EC" else "RS256"))
            except (jwt.PyJWTError, KeyError, ValueError):
                continue
            keys[raw.get("kid")] = key
        return keys


class OidcVerifier:
    """The `TokenVerifier` port for one issuer (settings section `oidc`)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.issuer: str = cfg.issuer
        self.algorithms = frozenset(cfg.algorithms) & ASYMMETRIC
        self.audiences = frozenset(cfg.audiences)
        discovery = cfg.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        self.jwks = JwksCache(jwks_url=cfg.jwks_url, discovery_url=discovery, issuer=self.issuer,
                              cache_s=cfg.jwks_cache_s, min_refresh_s=cfg.jwks_min_refresh_s,
                              timeout_s=cfg.http_timeout_s, algorithms=self.algorithms)

    def handles(self, token: str) -> bool:
        if token.count(".") != 2:
            return False
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == self.issuer
        except (jwt.PyJWTError, ValueError, AttributeError):
            return False

    def verify(self, token: str) -> ExternalClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _invalid() from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise _invalid("Token algorithm not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid()
        key = self.jwks.key(kid)
        if key is None:
            raise _invalid("Token signed by an unknown key")
        if key.algorithm_name != alg:
            raise _invalid("Token algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], issuer=self.issuer, leeway=self.cfg.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss"], "verify_aud": False})
        except jwt.ExpiredSignatureError as exc:
            raise errors.Unauthorized("Access token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise _invalid() from exc
        self._check(claims)
        email = claims.get("email")
        return ExternalClaims(
            issuer=self.issuer, subject=str(claims["sub"]),
            email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
            email_verified=claims.get("email_verified") in (True, "true"),
            issued_at=float(claims["iat"]), token_use=claims.get("token_use"))

    def _check(self, claims: dict[str, Any]) -> None:
        for name in ("exp", "iat", "nbf"):
            v = claims.get(name)
            if name in claims and (not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)):
                raise _invalid(f"Malformed claim {name!r}")
        if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise _invalid("Malformed claim 'sub'")
        if claims["exp"] - claims["iat"] > self.cfg.max_token_lifetime_s:
            raise _invalid("Token lifetime out of bounds")
        use = claims.get("token_use")
        if use is None:
            if self.cfg.require_token_use:
                raise _invalid("Token has no token_use")
        elif use not in self.cfg.token_use:
            raise _invalid("Token use not accepted")
        # Audience: `aud` (a string or a list), or Cognito's access tokens' `client_id` (they carry no `aud`).
        if "aud" in claims:
            aud = claims["aud"]
            auds = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
            if not auds & self.audiences:
                raise _invalid("Token audience not accepted")
        elif use == "access" and isinstance(claims.get("client_id"), str):
            if claims["client_id"] not in self.audiences:
                raise _invalid("Token client not accepted")
        else:
            raise _invalid("Token has no audience")
