"""YouTube over HTTP (the film studio's own adapter, on httpx): the OAuth 2.0 client (authorization-code flow with
PKCE, refresh of access tokens, revocation) and the YouTube Data API v3 calls publishing needs (the resumable upload
protocol, thumbnails.set, captions.insert, the channel's name).

The resumable upload: `POST <upload_base>/youtube/v3/videos?uploadType=resumable&part=snippet,status` with the
metadata as JSON and `X-Upload-Content-Length`/`-Type` answers the session URI in `Location`; the bytes go in `PUT`s
of `chunk_bytes` (a multiple of 256 KiB) with `Content-Range: bytes a-b/total`, each answered 308 with the bytes
the server holds (`Range: bytes=0-n`), the last one 200/201 with the video resource. A chunk that is interrupted (the
connection drops, a 5xx) is followed by a status query (`PUT`, empty, `Content-Range: bytes */total`) and the upload
goes on from the server's offset, at most `max_retries` failures in a row, waiting `backoff_s` doubling up to
`backoff_max_s` between them. A session the server no longer knows (404, 410) raises `SessionExpired`: the caller
starts a new one.

Errors carry the codes of docs/errors.md: 401 and a refused grant are `youtube_auth_failed`; 403/429 whose reason
is `quotaExceeded`, `rateLimitExceeded`, `userRateLimitExceeded`, `dailyLimitExceeded` or `uploadLimitExceeded`
are `youtube_quota_exceeded`; another 403 is `youtube_forbidden`; another 4xx `youtube_rejected`; a 5xx or no
answer `youtube_unavailable` (retryable).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

import httpx

from reelforge import errors
from reelforge.apps.film.settings import FilmYoutubeSettings

log = logging.getLogger("reelforge.film.youtube")

CHUNK_QUANTUM = 256 * 1024
QUOTA_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded",
                           "uploadLimitExceeded"})
_MAX_DETAIL = 300


# --- errors -----------------------------------------------------------------------------------------------------
class YoutubeNotConfigured(errors.ReelforgeError):
    status, code, title = 503, "youtube_not_configured", "YouTube publishing is not configured"


class YoutubeNotConnected(errors.ReelforgeError):
    status, code, title = 409, "youtube_not_connected", "No YouTube channel is connected"


class YoutubeAuthFailed(errors.ReelforgeError):
    status, code, title = 403, "youtube_auth_failed", "YouTube refused the authorization"


class YoutubeAccessDenied(errors.ReelforgeError):
    status, code, title = 403, "youtube_access_denied", "The YouTube authorization was declined"


class YoutubeForbidden(errors.ReelforgeError):
    status, code, title = 403, "youtube_forbidden", "YouTube refused the request for this channel"


class YoutubeQuotaExceeded(errors.ReelforgeError):
    status, code, title = 429, "youtube_quota_exceeded", "YouTube quota exceeded"


class YoutubeRejected(errors.ReelforgeError):
    status, code, title = 422, "youtube_rejected", "YouTube rejected the request"


class YoutubeUnavailable(errors.ReelforgeError):
    status, code, title, retryable = 502, "youtube_unavailable", "YouTube did not answer", True


class InvalidOAuthState(errors.ReelforgeError):
    status, code, title = 400, "invalid_oauth_state", "Invalid OAuth state"


class SessionExpired(Exception):
    """The upload session is gone (404/410): the upload starts again in a new session."""


def _detail(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:_MAX_DETAIL]


def _google_error(r: httpx.Response) -> tuple[str, list[str]]:
    """(message, reasons) of a Google error answer (`{"error": {"message", "errors": [{"reason"}]}}`, or the OAuth
    form `{"error": "invalid_grant", "error_description"}`)."""
    try:
        doc = r.json()
    except ValueError:
        return _detail(r.text) or f"HTTP {r.status_code}", []
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        reasons = [str(e.get("reason")) for e in err.get("errors") or () if isinstance(e, dict) and e.get("reason")]
        if isinstance(err.get("status"), str):
            reasons.append(str(err["status"]))
        return _detail(err.get("message") or f"HTTP {r.status_code}"), reasons
    if isinstance(err, str):
        return _detail(str(doc.get("error_description") or err)), [err]
    return f"HTTP {r.status_code}", []


def api_error(r: httpx.Response, what: str) -> errors.ReelforgeError:
    """The error a Data API answer `r` stands for (`what`: the request, for the message)."""
    message, reasons = _google_error(r)
    text = f"{what}: YouTube answered {r.status_code} ({message})"
    if r.status_code in (403, 429) and (QUOTA_REASONS & set(reasons) or r.status_code == 429):
        return YoutubeQuotaExceeded(text, reasons=reasons)
    if r.status_code == 401:
        return YoutubeAuthFailed(text + "; connect the channel again", reasons=reasons)
    if r.status_code == 403:
        return YoutubeForbidden(text, reasons=reasons)
    if r.status_code >= 500 or r.status_code == 408:
        return YoutubeUnavailable(text, reasons=reasons)
    return YoutubeRejected(text, reasons=reasons)


def http_client(cfg: FilmYoutubeSettings) -> httpx.Client:
    """A client for one operation: no redirects followed (a token must not travel to another host), the settings'
    timeout per request."""
    return httpx.Client(timeout=httpx.Timeout(cfg.timeout_s), follow_redirects=False,
                        headers={"User-Agent": "reelforge-film/1"})


# --- OAuth 2.0 ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: float
    refresh_token: str | None
    scope: str


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) of RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class OAuthClient:
    """The authorization-code flow against Google's (or a compatible) authorization server."""

    def __init__(self, cfg: FilmYoutubeSettings, http: httpx.Client) -> None:
        self.cfg = cfg
        self.http = http

    def authorize_url(self, *, state: str, redirect_uri: str, code_challenge: str) -> str:
        """Where the user's browser goes to grant access: offline (a refresh token), consent asked every time (so a
        refresh token comes back even on a second connect)."""
        query = urlencode({"client_id": self.cfg.client_id, "redirect_uri": redirect_uri, "response_type": "code",
                           "scope": " ".join(self.cfg.scopes), "state": state, "access_type": "offline",
                           "prompt": "consent", "include_granted_scopes": "true",
                           "code_challenge": code_challenge, "code_challenge_method": "S256"})
        sep = "&" if "?" in self.cfg.auth_uri else "?"
        return f"{self.cfg.auth_uri}{sep}{query}"

    def exchange(self, auth_code: str, *, redirect_uri: str, code_verifier: str) -> Tokens:
        """The tokens for an authorization code."""
        return self._token({"grant_type": "authorization_code", "code": auth_code, "redirect_uri": redirect_uri,
                            "code_verifier": code_verifier}, "exchanging the authorization code")

    def refresh(self, refresh_token: str) -> Tokens:
        """A new access token (`youtube_auth_failed` with `revoked=True` when the grant is no longer valid)."""
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token},
                           "refreshing the access token")

    def revoke(self, token: str) -> bool:
        """Revoke the grant (a refresh token revokes its access tokens too). Whether the server confirmed it."""
        try:
            r = self.http.post(self.cfg.revoke_uri, data={"token": token},
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        except httpx.HTTPError as exc:
            log.warning("revoking a YouTube grant failed: %s", type(exc).__name__)
            return False
        # 400 invalid_token: already revoked or expired, which is what was asked
        return r.status_code == 200 or (r.status_code == 400 and "invalid_token" in r.text)

    def _token(self, form: dict[str, str], what: str) -> Tokens:
        form = {**form, "client_id": self.cfg.client_id,
                "client_secret": self.cfg.client_secret.get_secret_value()}
        try:
            r = self.http.post(self.cfg.token_uri, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise YoutubeUnavailable(f"{what}: the token endpoint did not answer ({type(exc).__name__})") from exc
        if r.status_code != 200:
            message, reasons = _google_error(r)
            if r.status_code >= 500:
                raise YoutubeUnavailable(f"{what}: the token endpoint answered {r.status_code} ({message})")
            revoked = "invalid_grant" in reasons
            hint = "; connect the channel again" if revoked else "; check film.youtube.client_id and client_secret"
            raise YoutubeAuthFailed(f"{what}: {message}{hint}", reason=(reasons or ["error"])[0], revoked=revoked)
        try:
            doc = r.json()
            access = str(doc["access_token"])
            expires = float(doc.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError) as exc:
            raise YoutubeUnavailable(f"{what}: the token endpoint's answer is not a token") from exc
        refresh = doc.get("refresh_token")
        return Tokens(access_token=access, expires_in=expires, refresh_token=str(refresh) if refresh else None,
                      scope=str(doc.get("scope") or ""))


# --- the Data API -------------------------------------------------------------------------------------------------
TokenSource = Callable[[bool], str]
"""`token(force_refresh)`: a valid access token; a fresh one when `force_refresh` (the last was refused)."""


@dataclass
class UploadResult:
    video: dict[str, Any]
    interruptions: int  # chunks that failed and were resumed from the server's offset


def _range_end(r: httpx.Response) -> int:
    """The bytes the server holds, from a 308's `Range: bytes=0-n` (none: 0)."""
    value = r.headers.get("Range") or ""
    if not value.startswith("bytes="):
        return 0
    try:
        return int(value[len("bytes="):].split("-", 1)[1]) + 1
    except (IndexError, ValueError):
        raise YoutubeUnavailable(f"the upload answered an unreadable Range ({_detail(value)})") from None


class YoutubeApi:
    """The calls publishing makes, with one access-token refresh on a 401."""

    def __init__(self, cfg: FilmYoutubeSettings, http: httpx.Client, token: TokenSource, *,
                 sleep: Callable[[float], None] = time.sleep, check: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self.http = http
        self.token = token
        self.sleep = sleep
        self.check = check  # raises to stop (a cancelled job)

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, *, headers: dict[str, str] | None = None, **kw: Any
                 ) -> httpx.Response:
        """One request with the access token; on 401 once more with a refreshed token. Transport errors raise."""
        response: httpx.Response | None = None
        for force in (False, True):
            hdrs = {**(headers or {}), "Authorization": f"Bearer {self.token(force)}"}
            response = self.http.request(method, url, headers=hdrs, **kw)
            if response.status_code != 401:
                return response
        assert response is not None
        return response

    def _retrying(self, what: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        """`send()` again after a transport error or a 5xx, `max_retries` times at most, with backoff."""
        failures = 0
        while True:
            self.check()
            try:
                r = send()
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.cfg.max_retries:
                    raise YoutubeUnavailable(f"{what}: no answer from YouTube ({type(exc).__name__})") from exc
                self._backoff(failures)
                continue
            if r.status_code >= 500 and failures < self.cfg.max_retries:
                failures += 1
                self._backoff(failures)
                continue
            return r

    def _backoff(self, failures: int) -> None:
        self.sleep(min(self.cfg.backoff_s * 2 ** (failures - 1), self.cfg.backoff_max_s))

    def _json(self, r: httpx.Response, what: str) -> dict[str, Any]:
        try:
            doc = r.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise YoutubeUnavailable(f"{what}: YouTube's answer is not a JSON object")
        return doc

    def _same_origin(self, uri: str) -> str:
        """The session URI, when it is on the upload endpoint's origin: the access token goes nowhere else."""
        base, got = urlsplit(self.cfg.upload_base), urlsplit(uri)
        if (got.scheme, got.netloc) != (base.scheme, base.netloc):
            raise YoutubeRejected("the upload session is on another host than film.youtube.upload_base")
        return uri

    # --- channel ----------------------------------------------------------------------------------------------
    def channel(self) -> dict[str, Any] | None:
        """The connected account's channel: `{"id", "title"}`, or None when it has none."""
        url = f"{self.cfg.api_base}/youtube/v3/channels"
        r = self._retrying("reading the channel", lambda: self._request(
            "GET", url, params={"part": "snippet", "mine": "true"}))
        if r.status_code != 200:
            raise api_error(r, "reading the channel")
        items = self._json(r, "reading the channel").get("items") or []
        if not items or not isinstance(items[0], dict):
            return None
        first = items[0]
        return {"id": str(first.get("id") or ""), "title": str((first.get("snippet") or {}).get("title") or "")}

    # --- resumable upload -------------------------------------------------------------------------------------
    def start_upload(self, metadata: dict[str, Any], *, total: int, content_type: str) -> str:
        """A new upload session for `total` bytes: its URI."""
        url = f"{self.cfg.upload_base}/youtube/v3/videos"
        body = json.dumps(metadata).encode()
        r = self._retrying("starting the upload", lambda: self._request(
            "POST", url, params={"uploadType": "resumable", "part": "snippet,status"}, content=body,
            headers={"Content-Type": "application/json; charset=UTF-8", "X-Upload-Content-Length": str(total),
                     "X-Upload-Content-Type": content_type}))
        if r.status_code not in (200, 201):
            raise api_error(r, "starting the upload")
        location = r.headers.get("Location")
        if not location:
            raise YoutubeUnavailable("starting the upload: YouTube gave no session URI")
        return self._same_origin(location)

    def upload_status(self, session_uri: str, total: int) -> tuple[int, dict[str, Any] | None]:
        """(bytes the server holds, the video when the upload is complete). SessionExpired when it is gone."""
        self._same_origin(session_uri)
        r = self._retrying("asking how much was uploaded", lambda: self._request(
            "PUT", session_uri, content=b"", headers={"Content-Range": f"bytes */{total}"}))
        return self._status_of(r, total, "asking how much was uploaded")

    def _status_of(self, r: httpx.Response, total: int, what: str) -> tuple[int, dict[str, Any] | None]:
        if r.status_code in (200, 201):
            return total, self._json(r, what)
        if r.status_code == 308:
            return _range_end(r), None
        if r.status_code in (404, 410):
            raise SessionExpired(f"{what}: the upload session is gone ({r.status_code})")
        raise api_error(r, what)

    def upload(self, session_uri: str, source: BinaryIO, *, total: int, offset: int,
               on_offset: Callable[[int], None]) -> UploadResult:
        """Send the bytes of `source` from `offset` (what the server holds) to the end, chunk by chunk; after an
        interrupted chunk, resume from the offset the server reports. `on_offset(n)` is told every offset the
        server confirms. The video resource when the upload is complete."""
        self._same_origin(session_uri)
        chunk = int(self.cfg.chunk_bytes)
        failures = interruptions = 0
        while True:
            self.check()
            if offset >= total:  # everything is there but the server has not said so: ask
                held, video = self.upload_status(session_uri, total)
                if video is not None:
                    return UploadResult(video, interruptions)
                offset = held
                if offset >= total:
                    raise YoutubeUnavailable("the upload holds every byte but YouTube does not finish it")
                continue
            end = min(offset + chunk, total)
            source.seek(offset)
            data = source.read(end - offset)
            if len(data) != end - offset:
                raise YoutubeRejected("the video is shorter than its recorded size")
            try:
                r = self._request("PUT", session_uri, content=data,
                                  headers={"Content-Range": f"bytes {offset}-{end - 1}/{total}",
                                           "Content-Type": "application/octet-stream"})
                problem = f"YouTube answered {r.status_code}" if r.status_code >= 500 else None
            except httpx.TransportError as exc:
                r, problem = None, f"the connection failed ({type(exc).__name__})"
            if r is not None and problem is None:
                held, video = self._status_of(r, total, "uploading")
                if video is not None:
                    return UploadResult(video, interruptions)
                if held > offset:
                    failures = 0
                    offset = held
                    on_offset(offset)
                    continue
                problem = "YouTube kept none of the chunk"
            interruptions += 1
            while True:  # wait, then ask the server what it holds; a failed question counts as a failure too
                failures += 1
                log.info("upload at byte %d of %d interrupted (%s); %d failure(s) in a row", offset, total, problem,
                         failures)
                if failures > self.cfg.max_retries:
                    raise YoutubeUnavailable(f"uploading: {problem}, {failures} times in a row; the upload can "
                                             "resume", offset=offset)
                self._backoff(failures)
                self.check()
                try:
                    q = self._request("PUT", session_uri, content=b"", headers={"Content-Range": f"bytes */{total}"})
                except httpx.TransportError as exc:
                    problem = f"the status query failed ({type(exc).__name__})"
                    continue
                if q.status_code >= 500:
                    problem = f"the status query answered {q.status_code}"
                    continue
                held, video = self._status_of(q, total, "asking how much was uploaded")
                break
            if video is not None:
                return UploadResult(video, interruptions)
            if held != offset:
                on_offset(held)
            offset = held

    # --- after the upload -------------------------------------------------------------------------------------
    def set_thumbnail(self, video_id: str, data: bytes, content_type: str) -> dict[str, Any]:
        """Set the video's custom thumbnail (JPEG or PNG, 2 MB at most)."""
        url = f"{self.cfg.upload_base}/youtube/v3/thumbnails/set"
        r = self._retrying("setting the thumbnail", lambda: self._request(
            "POST", url, params={"videoId": video_id}, content=data, headers={"Content-Type": content_type}))
        if r.status_code not in (200, 201):
            raise api_error(r, "setting the thumbnail")
        return self._json(r, "setting the thumbnail")

    def insert_caption(self, video_id: str, data: bytes, *, language: str, name: str) -> dict[str, Any]:
        """Add a caption track (SRT or WebVTT) to the video."""
        url = f"{self.cfg.upload_base}/youtube/v3/captions"
        boundary = uuid.uuid4().hex
        meta = json.dumps({"snippet": {"videoId": video_id, "language": language, "name": name,
                                       "isDraft": False}}).encode()
        body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode() + meta
                + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + data
                + f"\r\n--{boundary}--\r\n".encode())
        r = self._retrying("adding the captions", lambda: self._request(
            "POST", url, params={"part": "snippet", "uploadType": "multipart"}, content=body,
            headers={"Content-Type": f"multipart/related; boundary={boundary}"}))
        if r.status_code not in (200, 201):
            raise api_error(r, "adding the captions")
        return self._json(r, "adding the captions")
