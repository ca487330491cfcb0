"""A local stand-in for Google's OAuth 2.0 server and the YouTube Data API v3, speaking their protocols over real
HTTP on 127.0.0.1 (a threaded `http.server`): the authorization endpoint (consent given at once, or declined),
the token endpoint (authorization_code with PKCE S256, refresh_token; form-encoded; client authentication),
revocation, channels.list, the resumable upload (session URI, chunks with Content-Range, 308 with Range, status
queries, the final 200 with the video resource), thumbnails.set and captions.insert (multipart/related).

Faults on request: drop the connection in the middle of a chunk (keeping the bytes read so far, as a real server
may), answer 5xx, answer 403 with a quota reason, refuse every access token (401), revoke every grant, refuse
thumbnails. Uploaded bytes are kept, so tests compare their SHA-256 with the source.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

QUANTUM = 256 * 1024
CLIENT_ID = "fake-client-id.apps.example"
CLIENT_SECRET = "fake-client-secret"


@dataclass
class Session:
    upload_id: str
    total: int
    content_type: str
    metadata: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)
    video_id: str | None = None


@dataclass
class Video:
    id: str
    metadata: dict[str, Any]
    content_type: str
    data: bytes
    thumbnail: bytes | None = None
    thumbnail_type: str | None = None
    captions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class FakeYoutube:
    """The fake server; `start()` it, point `settings()` at it, `stop()` it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # token -> {"revoked": bool}
        self.access_tokens: dict[str, dict[str, Any]] = {}  # token -> {"refresh": str, "valid": bool}
        self.sessions: dict[str, Session] = {}
        self.videos: dict[str, Video] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.issued: list[str] = []  # every token handed out (tests look for them in the database)
        self.channel = {"id": "UCfakechannel0000000000", "title": "The Lighthouse Films"}
        self.access_ttl = 3600
        # faults
        self.deny_consent = False
        self.drops: list[int] = []  # per drop to come: bytes of the next chunk read (and kept) before hanging up
        self.server_errors = 0  # chunk PUTs to answer 503
        self.quota_reason: str | None = None  # e.g. "quotaExceeded": the upload's first request answers 403
        self.reject_tokens = False  # every access token is refused (401)
        self.thumbnail_forbidden = False
        self.expire_on_drop = False  # a drop also ends the upload session (status queries then answer 404)
        self.location_base: str | None = None  # where the session URI points (default: this server)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-youtube", daemon=True)

    # --- life -------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeYoutube:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The `film.youtube` section that points at this server."""
        base = self.base_url
        return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "auth_uri": f"{base}/o/oauth2/auth",
                "token_uri": f"{base}/token", "revoke_uri": f"{base}/revoke", "api_base": base,
                "upload_base": f"{base}/upload", "chunk_bytes": QUANTUM, "max_retries": 3, "backoff_s": 0.02,
                "backoff_max_s": 0.1, "timeout_s": 10, **overrides}

    # --- faults and facts -------------------------------------------------------------------------------------
    def revoke_all(self) -> None:
        """As if the user removed the app's access in their Google account."""
        with self.lock:
            for t in self.refresh_tokens.values():
                t["revoked"] = True
            for a in self.access_tokens.values():
                a["valid"] = False

    def expire_access_tokens(self) -> None:
        with self.lock:
            for a in self.access_tokens.values():
                a["valid"] = False

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    def live_refresh_tokens(self) -> list[str]:
        return [t for t, v in self.refresh_tokens.items() if not v["revoked"]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _google_error(status: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message,
                      "errors": [{"message": message, "domain": "youtube", "reason": reason}]}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    # quiet
    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeYoutube:
        return self.server.fake  # type: ignore[no-any-return]

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None and not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def _route(self) -> str:
        return urlsplit(self.path).path

    def _authorized(self) -> bool:
        """Whether the bearer token is one this server issued and still honours; answers 401 when not."""
        auth = self.headers.get("Authorization") or ""
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        with self.fake.lock:
            info = self.fake.access_tokens.get(token)
            ok = info is not None and info["valid"] and not self.fake.reject_tokens
        if not ok:
            self._body()
            self._answer(401, _google_error(401, "authError", "Invalid Credentials"),
                         {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return ok

    def _log(self) -> None:
        with self.fake.lock:
            self.fake.requests.append((self.command, self._route()))

    # --- methods ----------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._log()
        route = self._route()
        if route == "/o/oauth2/auth":
            return self._authorize()
        if route == "/youtube/v3/channels":
            if not self._authorized():
                return None
            q = self._query()
            if q.get("mine") != "true" or "snippet" not in q.get("part", ""):
                return self._answer(400, _google_error(400, "badRequest", "mine=true&part=snippet expected"))
            ch = self.fake.channel
            return self._answer(200, {"kind": "youtube#channelListResponse",
                                      "items": [{"kind": "youtube#channel", "id": ch["id"],
                                                 "snippet": {"title": ch["title"]}}]})
        return self._answer(404, _google_error(404, "notFound", "no such route"))

    def do_POST(self) -> None:
        self._log()
        route = self._route()
        if route == "/token":
            return self._token()
        if route == "/revoke":
            return self._revoke()
        if route == "/upload/youtube/v3/videos":
            return self._initiate()
        if route == "/upload/youtube/v3/thumbnails/set":
            return self._thumbnail()
        if route == "/upload/youtube/v3/captions":
            return self._caption()
        self._body()
        return self._answer(404, _google_error(404, "notFound", "no such route"))

    def do_PUT(self) -> None:
        self._log()
        if self._route() == "/upload/youtube/v3/videos":
            return self._chunk()
        self._body()
        return self._answer(404, _google_error(404, "notFound", "no such route"))

    # --- OAuth ------------------------------------------------------------------------------------------------
    def _authorize(self) -> None:
        q = self._query()
        redirect = q.get("redirect_uri", "")
        if q.get("client_id") != CLIENT_ID or not redirect:
            return self._answer(400, {"error": "invalid_request", "error_description": "unknown client"})
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                or not q.get("code_challenge"):
            return self._answer(400, {"error": "invalid_request", "error_description": "code + PKCE S256 expected"})
        if self.fake.deny_consent:
            target = f"{redirect}?{urlencode({'error': 'access_denied', 'state': q.get('state', '')})}"
            return self._answer(302, b"", {"Location": target})
        code = "4/" + secrets.token_urlsafe(24)
        with self.fake.lock:
            self.fake.codes[code] = {"redirect_uri": redirect, "challenge": q["code_challenge"],
                                     "scope": q.get("scope", ""), "used": False, "offline":
                                         q.get("access_type") == "offline"}
        target = f"{redirect}?{urlencode({'code': code, 'state': q.get('state', ''), 'scope': q.get('scope', '')})}"
        return self._answer(302, b"", {"Location": target})

    def _token(self) -> None:
        form = {k: v[0] for k, v in parse_qs(self._body().decode()).items()}
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return self._answer(401, {"error": "invalid_client", "error_description": "The OAuth client was not "
                                                                                      "found."})
        grant = form.get("grant_type")
        with self.fake.lock:
            if grant == "authorization_code":
                info = self.fake.codes.get(form.get("code", ""))
                if info is None or info["used"]:
                    return self._answer(400, {"error": "invalid_grant", "error_description": "Malformed auth code."})
                info["used"] = True
                if info["redirect_uri"] != form.get("redirect_uri"):
                    return self._answer(400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
                verifier = form.get("code_verifier", "")
                if _b64(hashlib.sha256(verifier.encode()).digest()) != info["challenge"]:
                    return self._answer(400, {"error": "invalid_grant",
                                              "error_description": "Invalid code verifier."})
                refresh = "1//" + secrets.token_urlsafe(32)
                self.fake.refresh_tokens[refresh] = {"revoked": False}
                access = self._issue(refresh)
                self.fake.issued += [refresh, access]
                doc = {"access_token": access, "expires_in": self.fake.access_ttl, "scope": info["scope"],
                       "token_type": "Bearer"}
                if info["offline"]:
                    doc["refresh_token"] = refresh
                return self._answer(200, doc)
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                state = self.fake.refresh_tokens.get(refresh)
                if state is None or state["revoked"]:
                    return self._answer(400, {"error": "invalid_grant",
                                              "error_description": "Token has been expired or revoked."})
                access = self._issue(refresh)
                self.fake.issued.append(access)
                return self._answer(200, {"access_token": access, "expires_in": self.fake.access_ttl,
                                          "token_type": "Bearer"})
        return self._answer(400, {"error": "unsupported_grant_type"})

    def _issue(self, refresh: str) -> str:
        access = "ya29." + secrets.token_urlsafe(32)
        self.fake.access_tokens[access] = {"refresh": refresh, "valid": True}
        return access

    def _revoke(self) -> None:
        token = parse_qs(self._body().decode()).get("token", [""])[0]
        with self.fake.lock:
            if token in self.fake.refresh_tokens:
                self.fake.refresh_tokens[token]["revoked"] = True
                for a in self.fake.access_tokens.values():
                    if a["refresh"] == token:
                        a["valid"] = False
                return self._answer(200, {})
            if token in self.fake.access_tokens:
                self.fake.access_tokens[token]["valid"] = False
                return self._answer(200, {})
        return self._answer(400, {"error": "invalid_token", "error_description": "Bad Request"})

    # --- the resumable upload ---------------------------------------------------------------------------------
    def _initiate(self) -> None:
        if not self._authorized():
            return None
        q = self._query()
        body = self._body()
        if self.fake.quota_reason:
            reason = self.fake.quota_reason
            return self._answer(403, _google_error(403, reason, "The request cannot be completed because you have "
                                                               "exceeded your quota."))
        if q.get("uploadType") != "resumable" or set(q.get("part", "").split(",")) != {"snippet", "status"}:
            return self._answer(400, _google_error(400, "badRequest", "uploadType=resumable&part=snippet,status"))
        try:
            total = int(self.headers["X-Upload-Content-Length"])
            ctype = self.headers["X-Upload-Content-Type"]
            meta = json.loads(body)
            assert meta["snippet"]["title"]
        except (KeyError, TypeError, ValueError, AssertionError):
            return self._answer(400, _google_error(400, "invalidMetadata", "metadata or upload headers missing"))
        upload_id = secrets.token_urlsafe(16)
        with self.fake.lock:
            self.fake.sessions[upload_id] = Session(upload_id, total, ctype, meta)
        base = self.fake.location_base or self.fake.base_url
        location = f"{base}/upload/youtube/v3/videos?uploadType=resumable&upload_id={upload_id}"
        return self._answer(200, b"", {"Location": location})

    def _chunk(self) -> None:
        if not self._authorized():
            return None
        session = self.fake.sessions.get(self._query().get("upload_id", ""))
        if session is None:
            self._body()
            return self._answer(404, _google_error(404, "notFound", "no such upload session"))
        crange = self.headers.get("Content-Range") or ""
        status = re.fullmatch(r"bytes \*/(\d+)", crange)
        if status:  # the status query
            self._body()
            return self._progress(session)
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", crange)
        length = int(self.headers.get("Content-Length") or 0)
        if not m:
            self._body()
            return self._answer(400, _google_error(400, "badContentRange", "Content-Range expected"))
        first, last, total = (int(g) for g in m.groups())
        if total != session.total or last - first + 1 != length:
            self._body()
            return self._answer(400, _google_error(400, "badContentRange", "the range does not match"))
        with self.fake.lock:
            drop = self.fake.drops.pop(0) if self.fake.drops else None
            fail = drop is None and self.fake.server_errors > 0
            if fail:
                self.fake.server_errors -= 1
        if drop is not None:  # read part of the chunk, keep it, hang up without an answer
            got = self.rfile.read(min(drop, length))
            with self.fake.lock:
                if first == len(session.data):
                    session.data += got
                if self.fake.expire_on_drop:
                    self.fake.sessions.pop(session.upload_id, None)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        data = self.rfile.read(length)
        if fail:
            return self._answer(503, _google_error(503, "backendError", "Backend Error"))
        with self.fake.lock:
            if first != len(session.data):
                return self._answer(400, _google_error(400, "badContentRange",
                                                       f"expected the bytes from {len(session.data)}"))
            if last + 1 < total and length % QUANTUM:
                return self._answer(400, _google_error(400, "badChunkSize",
                                                       "chunks but the last must be multiples of 256 KiB"))
            session.data += data
        return self._progress(session)

    def _progress(self, session: Session) -> None:
        with self.fake.lock:
            held = len(session.data)
            if held == session.total and session.video_id is None:
                video_id = secrets.token_urlsafe(8).replace("-", "x").replace("_", "y")[:11]
                session.video_id = video_id
                self.fake.videos[video_id] = Video(video_id, session.metadata, session.content_type,
                                                   bytes(session.data))
        if held == session.total:
            meta = session.metadata
            return self._answer(200, {"kind": "youtube#video", "id": session.video_id, "snippet": meta["snippet"],
                                      "status": {**meta.get("status", {}), "uploadStatus": "uploaded"}})
        headers = {"Range": f"bytes=0-{held - 1}"} if held else {}
        return self._answer(308, b"", headers)

    # --- after the upload -------------------------------------------------------------------------------------
    def _thumbnail(self) -> None:
        if not self._authorized():
            return None
        body = self._body()
        video = self.fake.videos.get(self._query().get("videoId", ""))
        if video is None:
            return self._answer(404, _google_error(404, "videoNotFound", "The video was not found."))
        if self.fake.thumbnail_forbidden:
            return self._answer(403, _google_error(403, "forbidden", "The authenticated user doesn't have "
                                                                     "permissions to upload custom thumbnails."))
        ctype = (self.headers.get("Content-Type") or "").split(";")[0]
        if ctype not in ("image/jpeg", "image/png") or not body:
            return self._answer(400, _google_error(400, "invalidImage", "The image is not a JPEG or PNG."))
        video.thumbnail, video.thumbnail_type = body, ctype
        return self._answer(200, {"kind": "youtube#thumbnailSetResponse",
                                  "items": [{"default": {"url": f"https://i.ytimg.example/{video.id}/default.jpg",
                                                         "width": 120, "height": 90}}]})

    def _caption(self) -> None:
        if not self._authorized():
            return None
        body = self._body()
        m = re.match(r"multipart/related;\s*boundary=(\S+)", self.headers.get("Content-Type") or "")
        if not m:
            return self._answer(400, _google_error(400, "badRequest", "multipart/related expected"))
        boundary = m.group(1).encode()
        parts = [p for p in body.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
        try:
            _, meta_body = parts[0].split(b"\r\n\r\n", 1)
            meta = json.loads(meta_body.strip())
            _, data = parts[1].split(b"\r\n\r\n", 1)
            data = data[:-2] if data.endswith(b"\r\n") else data
            video = self.fake.videos[meta["snippet"]["videoId"]]
        except (IndexError, ValueError, KeyError):
            return self._answer(400, _google_error(400, "invalidMetadata", "caption metadata or file missing"))
        video.captions.append({"language": meta["snippet"].get("language"), "name": meta["snippet"].get("name"),
                               "data": data, "at": time.time()})
        return self._answer(200, {"kind": "youtube#caption", "id": secrets.token_hex(6),
                                  "snippet": meta["snippet"]})
