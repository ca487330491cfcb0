"""Publishing to YouTube, the use cases: an account's connection (connect, callback, status, disconnect), its
tokens (sealed at rest, the access token refreshed when it expires or is refused), the checks of a publish request,
and the upload state of `film.publish` jobs.

Connecting: `connect` makes a random `state` (stored as its SHA-256, with the PKCE verifier sealed, for
`film.youtube.state_ttl_s`, the account's ten newest kept) and the authorization URL; the callback takes the state
(once: the row is deleted by whoever reads it), exchanges the code and stores the refresh token sealed by the
platform's secret box, bound to the account (a sealed value copied to another account's row does not open). The
callback needs no signed-in caller: the state names the account, as only that account's connect could make it.

A grant that Google no longer honours (`invalid_grant` on refresh, a 401 after a fresh token) marks the connection
`invalid`: publishing answers `youtube_auth_failed` until the account connects again.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from reelforge import errors
from reelforge.applications import app_settings
from reelforge.apps.film.repository import FilmRepo
from reelforge.apps.film.settings import FilmYoutubeSettings
from reelforge.apps.film.youtube import (
    InvalidOAuthState,
    OAuthClient,
    TokenSource,
    YoutubeAccessDenied,
    YoutubeApi,
    YoutubeAuthFailed,
    YoutubeNotConfigured,
    YoutubeNotConnected,
    http_client,
    pkce_pair,
)
from reelforge.apps.film.youtube_repository import CONNECTED, INVALID, Connection, UploadState, YoutubeRepo
from reelforge.domain.types import Principal

log = logging.getLogger("reelforge.film.youtube")

KEEP_STATES = 10  # pending connects per account
_EARLY_S = 60.0  # an access token is renewed this long before Google says it expires
THUMBNAIL_TYPES = ("image/jpeg", "image/png")
THUMBNAIL_MAX_BYTES = 2 * 1024 * 1024  # YouTube's limit
CAPTION_TYPES = ("text/vtt", "application/x-subrip", "text/srt", "application/x-srt", "text/plain")


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()


class YoutubeService:
    """YouTube connections and publishing checks over the film studio's database and the platform's secret box."""

    def __init__(self, film: Any) -> None:
        self.film = film
        self.store = film.store
        self.settings = film.settings

    @property
    def cfg(self) -> FilmYoutubeSettings:
        cfg: FilmYoutubeSettings = app_settings(self.settings, "film").youtube
        return cfg

    def require_configured(self) -> FilmYoutubeSettings:
        cfg = self.cfg
        if not cfg.configured:
            raise YoutubeNotConfigured("YouTube publishing is not configured on this server: set "
                                       "film.youtube.client_id and client_secret (REELFORGE_FILM__YOUTUBE__...)")
        return cfg

    def redirect_uri(self) -> str:
        return self.cfg.redirect_uri or f"{str(self.settings.public_url).rstrip('/')}/v1/film/youtube/callback"

    def console_url(self) -> str:
        return self.cfg.console_url or f"{str(self.settings.public_url).rstrip('/')}/film"

    # --- sealing ----------------------------------------------------------------------------------------------
    def _seal(self, purpose: str, user_id: str, value: str) -> str:
        box = self.film.secrets
        if box is None:
            raise errors.ServiceUnavailable("No secret box to keep YouTube tokens with", code="unavailable")
        return str(box.seal(f"{purpose}:{user_id}:{value}"))

    def _open(self, purpose: str, user_id: str, sealed: str) -> str:
        plain = str(self.film.secrets.open(sealed))
        head = f"{purpose}:{user_id}:"
        if not plain.startswith(head):
            raise errors.SecretUnreadable("A stored YouTube secret belongs to another account or use")
        return plain[len(head):]

    # --- connection -------------------------------------------------------------------------------------------
    def status(self, user_id: str) -> dict[str, Any]:
        """Whether publishing is configured here, whether the account's channel is connected, and which."""
        cfg = self.cfg
        with self.store.tx(write=False) as tx:
            conn = YoutubeRepo(tx).connection(user_id)
        out: dict[str, Any] = {"configured": cfg.configured, "connected": False, "channel": None}
        if conn is not None and conn.status == CONNECTED:
            out["connected"] = True
        if conn is not None:
            out["channel"] = {"id": conn.channel_id, "title": conn.channel_title} if conn.channel_id else None
            out["connected_at"] = conn.created_at
            out["scopes"] = conn.scopes.split()
        if not cfg.configured:
            out["reason"] = "youtube_not_configured"
        elif conn is None:
            out["reason"] = "youtube_not_connected"
        elif conn.status == INVALID:
            out["reason"] = "youtube_auth_failed"
            out["error"] = conn.error
        return out

    def connect(self, p: Principal) -> dict[str, Any]:
        """A new pending state and the URL the caller's browser opens to grant access."""
        cfg = self.require_configured()
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        redirect = self.redirect_uri()
        with self.store.tx() as tx:
            YoutubeRepo(tx).add_state(state_hash=state_hash(state), user_id=p.user_id,
                                      code_verifier=self._seal("pkce", p.user_id, verifier), redirect_uri=redirect,
                                      ttl_s=cfg.state_ttl_s, keep=KEEP_STATES)
        with http_client(cfg) as http:
            url = OAuthClient(cfg, http).authorize_url(state=state, redirect_uri=redirect, code_challenge=challenge)
        return {"authorize_url": url, "state": state, "expires_in": int(cfg.state_ttl_s), "redirect_uri": redirect}

    def callback(self, *, code: str | None, state: str, error: str | None = None) -> tuple[str, dict[str, Any]]:
        """Finish a connect: take the state (once), exchange the code, store the tokens sealed, read the channel's
        name. Returns (the account's id, its status)."""
        cfg = self.require_configured()
        with self.store.tx() as tx:
            pending = YoutubeRepo(tx).take_state(state_hash(state))
            now = tx.now()
        if pending is None:
            raise InvalidOAuthState("Unknown or already used OAuth state; start again with POST "
                                    "/v1/film/youtube/connect", reason="unknown")
        if pending.expires_at < now:
            raise InvalidOAuthState("The OAuth state expired; start again with POST /v1/film/youtube/connect",
                                    reason="expired")
        if error:
            raise YoutubeAccessDenied(f"The authorization was not granted ({error[:100]})", error=error[:100])
        if not code:
            raise InvalidOAuthState("The callback carries no authorization from Google",
                                    reason="missing_grant")
        user_id = pending.user_id
        verifier = self._open("pkce", user_id, pending.code_verifier)
        with http_client(cfg) as http:
            tokens = OAuthClient(cfg, http).exchange(code, redirect_uri=pending.redirect_uri, code_verifier=verifier)
            refresh = tokens.refresh_token
            if refresh is None:
                with self.store.tx(write=False) as tx:
                    old = YoutubeRepo(tx).connection(user_id)
                if old is None or old.status != CONNECTED:
                    raise YoutubeAuthFailed("Google granted no refresh token; connect again (and allow offline "
                                            "access)")
                refresh = self._open("refresh", user_id, old.refresh_token)
            channel: dict[str, Any] | None = None
            try:
                channel = YoutubeApi(cfg, http, lambda _force: tokens.access_token).channel()
            except errors.ReelforgeError as exc:  # the connection stands without the channel's name
                log.info("reading the connected channel failed: %s", exc.code)
        with self.store.tx() as tx:
            repo = YoutubeRepo(tx)
            now = tx.now()
            repo.put_connection(
                user_id, refresh_token=self._seal("refresh", user_id, refresh),
                access_token=self._seal("access", user_id, tokens.access_token),
                access_expires_at=now + max(0.0, tokens.expires_in - _EARLY_S),
                scopes=tokens.scope or " ".join(cfg.scopes), channel_id=(channel or {}).get("id") or None,
                channel_title=((channel or {}).get("title") or None), status=CONNECTED, error=None)
        return user_id, self.status(user_id)

    def disconnect(self, p: Principal) -> dict[str, Any]:
        """Forget the caller's connection, revoking the grant at Google when configured (best effort)."""
        conn, revoked = self.forget(p.user_id)
        return {**self.status(p.user_id), "was_connected": conn is not None, "revoked": revoked}

    def forget(self, user_id: str) -> tuple[Connection | None, bool]:
        """Delete the account's connection, then revoke its grant at Google when configured (best effort: the
        row is gone whatever Google answers). The connection there was, and whether Google confirmed."""
        with self.store.tx() as tx:
            repo = YoutubeRepo(tx)
            conn = repo.connection(user_id)
            if conn is not None:
                repo.delete_connection(user_id)
        revoked = False
        cfg = self.cfg
        if conn is not None and cfg.configured:
            try:
                token = self._open("refresh", user_id, conn.refresh_token)
            except errors.SecretUnreadable:
                token = None
            if token:
                with http_client(cfg) as http:
                    revoked = OAuthClient(cfg, http).revoke(token)
        return conn, revoked

    def connection(self, user_id: str) -> Connection | None:
        with self.store.tx(write=False) as tx:
            return YoutubeRepo(tx).connection(user_id)

    def mark_invalid(self, user_id: str, message: str) -> None:
        """The grant no longer works: publishing refuses until the account connects again."""
        with self.store.tx() as tx:
            YoutubeRepo(tx).update_connection(user_id, status=INVALID, error=message[:500], access_token=None,
                                              access_expires_at=None)

    def token_source(self, user_id: str) -> TokenSource:
        """Access tokens of the account: the stored one while it is valid, else (or when `force`) a refreshed one,
        stored sealed. A refused grant marks the connection invalid."""
        cfg = self.require_configured()

        def token(force: bool) -> str:
            with self.store.tx(write=False) as tx:
                conn = YoutubeRepo(tx).connection(user_id)
                now = tx.now()
            if conn is None:
                raise YoutubeNotConnected("No YouTube channel is connected; connect one first")
            if conn.status != CONNECTED:
                raise YoutubeAuthFailed("The YouTube authorization is no longer valid; connect the channel again")
            if not force and conn.access_token and (conn.access_expires_at or 0) > now:
                return self._open("access", user_id, conn.access_token)
            with http_client(cfg) as http:
                try:
                    tokens = OAuthClient(cfg, http).refresh(self._open("refresh", user_id, conn.refresh_token))
                except YoutubeAuthFailed as exc:
                    if exc.details.get("revoked"):
                        self.mark_invalid(user_id, exc.message)
                    raise
            values: dict[str, Any] = {"access_token": self._seal("access", user_id, tokens.access_token)}
            if tokens.refresh_token:  # rotated
                values["refresh_token"] = self._seal("refresh", user_id, tokens.refresh_token)
            with self.store.tx() as tx:
                values["access_expires_at"] = tx.now() + max(0.0, tokens.expires_in - _EARLY_S)
                YoutubeRepo(tx).update_connection(user_id, **values)
            return tokens.access_token

        return token

    # --- publish ----------------------------------------------------------------------------------------------
    def check_publish(self, p: Principal, data: dict[str, Any]) -> None:
        """Refuse a `film.publish` job before it is queued: publishing configured, the project the caller's own
        (404 for anyone else's, 403 `read_only_share` for a project shared with them), each asset the caller's
        and of its kind, and a working connection."""
        from reelforge.apps.film.service import FilmService

        self.require_configured()
        with self.store.tx(write=False) as tx:
            FilmService._access(FilmRepo(tx), p, str(data.get("project_id") or ""), write=True)
            video = self._asset(tx, p.user_id, data.get("video_asset_id"), "video_asset_id", ("video/",))
            if not video.size:
                raise errors.ValidationFailed("The video is empty", code="invalid_asset_type",
                                              field="video_asset_id", asset_id=video.id, expected="video/*")
            if data.get("thumbnail_asset_id"):
                thumb = self._asset(tx, p.user_id, data["thumbnail_asset_id"], "thumbnail_asset_id",
                                    THUMBNAIL_TYPES)
                if thumb.size > THUMBNAIL_MAX_BYTES:
                    raise errors.ValidationFailed(
                        f"A YouTube thumbnail is at most {THUMBNAIL_MAX_BYTES} bytes", code="thumbnail_too_large",
                        field="thumbnail_asset_id", limit=THUMBNAIL_MAX_BYTES, size=thumb.size)
            if data.get("captions_asset_id"):
                self._asset(tx, p.user_id, data["captions_asset_id"], "captions_asset_id", CAPTION_TYPES)
            conn = YoutubeRepo(tx).connection(p.user_id)
        if conn is None:
            raise YoutubeNotConnected("No YouTube channel is connected: POST /v1/film/youtube/connect first")
        if conn.status != CONNECTED:
            raise YoutubeAuthFailed("The YouTube authorization is no longer valid; connect the channel again")

    @staticmethod
    def _asset(tx: Any, owner_id: str, asset_id: Any, field: str, kinds: tuple[str, ...]) -> Any:
        asset = tx.assets.asset(str(asset_id), owner_id=owner_id) if isinstance(asset_id, str) and \
            len(asset_id) == 32 and asset_id.isalnum() else None
        if asset is None:
            raise errors.ValidationFailed(f"No asset {str(asset_id)[:64]!r} of yours", code="asset_not_found",
                                          field=field, asset_id=str(asset_id)[:64])
        ctype = asset.content_type.lower().split(";")[0].strip()
        if not any(ctype == k or (k.endswith("/") and ctype.startswith(k)) for k in kinds):
            wanted = ", ".join(k + "*" if k.endswith("/") else k for k in kinds)
            raise errors.ValidationFailed(
                f"The asset is {asset.content_type}; {field} takes {wanted}",
                code="invalid_asset_type", field=field, asset_id=asset.id, expected=list(kinds))
        return asset

    def asset(self, owner_id: str, asset_id: str, field: str, kinds: tuple[str, ...]) -> Any:
        with self.store.tx(write=False) as tx:
            return self._asset(tx, owner_id, asset_id, field, kinds)

    # --- upload state ---------------------------------------------------------------------------------------------
    def upload_state(self, job_id: str) -> UploadState | None:
        with self.store.tx(write=False) as tx:
            return YoutubeRepo(tx).upload(job_id)

    def begin_upload(self, job_id: str, *, user_id: str, project_id: str, asset: Any) -> UploadState:
        """The job's upload state for this video: the stored one when it is for the same bytes, else a new one."""
        with self.store.tx() as tx:
            repo = YoutubeRepo(tx)
            state = repo.upload(job_id)
            if state is not None and state.sha256 == asset.sha256 and state.total_bytes == asset.size:
                return state
            if state is not None:
                repo.update_upload(job_id, asset_id=asset.id, sha256=asset.sha256, total_bytes=asset.size,
                                   session_uri=None, confirmed_bytes=0, video_id=None)
            else:
                repo.add_upload(job_id=job_id, user_id=user_id, project_id=project_id, asset_id=asset.id,
                                sha256=asset.sha256, total_bytes=asset.size)
            found = repo.upload(job_id)
        assert found is not None
        return found

    def session_uri(self, state: UploadState) -> str | None:
        return self._open("upload", state.user_id, state.session_uri) if state.session_uri else None

    def save_session(self, state: UploadState, uri: str | None) -> UploadState:
        """A new session (or none: the old one is gone): nothing of it is confirmed yet."""
        with self.store.tx() as tx:
            repo = YoutubeRepo(tx)
            repo.update_upload(state.job_id, session_uri=self._seal("upload", state.user_id, uri) if uri else None,
                               confirmed_bytes=0, sessions=state.sessions + (1 if uri else 0))
            found = repo.upload(state.job_id)
        assert found is not None
        return found

    def save_offset(self, job_id: str, confirmed: int, *, resumed: bool = False) -> None:
        with self.store.tx() as tx:
            repo = YoutubeRepo(tx)
            values: dict[str, Any] = {"confirmed_bytes": int(confirmed)}
            if resumed:
                current = repo.upload(job_id)
                values["resumes"] = (current.resumes if current else 0) + 1
            repo.update_upload(job_id, **values)

    def finish_upload(self, job_id: str, video_id: str, interruptions: int) -> UploadState:
        with self.store.tx() as tx:
            repo = YoutubeRepo(tx)
            current = repo.upload(job_id)
            assert current is not None
            repo.update_upload(job_id, video_id=video_id, session_uri=None, confirmed_bytes=current.total_bytes,
                               resumes=current.resumes + interruptions)
            found = repo.upload(job_id)
        assert found is not None
        return found
