"""Publishing to YouTube over HTTP: the caller's connection (`/v1/film/youtube`) and `film.publish` jobs.

| method and path | answer |
| --- | --- |
| `GET /v1/film/youtube` | 200 whether publishing is configured, whether your channel is connected, and which |
| `POST /v1/film/youtube/connect` | 200 the authorization URL to open and its `state` (503 `youtube_not_configured`) |
| `GET /v1/film/youtube/callback?code=&state=` | where Google sends the browser back: 303 to the console, or JSON |
| `DELETE /v1/film/youtube` | 200 disconnected (the grant revoked at Google) |
| `POST /v1/projects/{id}/publish` | 202 the `film.publish` job (same as `POST /v1/jobs`) |

The callback is the one route without a signed-in caller: Google's redirect brings no token; the single-use state
names the account that asked to connect.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from reelforge import errors
from reelforge.api import convert
from reelforge.api.deps import CurrentUser, container_of
from reelforge.api.openapi import problems
from reelforge.api.schemas.common import iso
from reelforge.api.schemas.jobs import JobPublic
from reelforge.apps.film.publish import KIND, PublishFields

router = APIRouter(tags=["film"])


class Channel(BaseModel):
    id: str | None
    title: str | None


class YoutubeStatus(BaseModel):
    configured: bool
    connected: bool
    channel: Channel | None
    reason: str | None = Field(default=None, description="Why not connected: youtube_not_configured, "
                                                         "youtube_not_connected or youtube_auth_failed")
    error: str | None = None
    scopes: list[str] | None = None
    connected_at: str | None = None


class YoutubeDisconnected(YoutubeStatus):
    was_connected: bool
    revoked: bool = Field(description="Whether Google confirmed the revocation of the grant")


class YoutubeConnect(BaseModel):
    authorize_url: str = Field(description="Open it in the browser to grant access")
    state: str
    expires_in: int = Field(description="Seconds the state waits for the callback")
    redirect_uri: str


class PublishCreate(PublishFields):
    """What to publish and how."""


def _svc(request: Request) -> Any:
    return container_of(request).app("film").youtube


def _status(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    if out.get("connected_at") is not None:
        out["connected_at"] = iso(out["connected_at"])
    return out


@router.get("/film/youtube", response_model=YoutubeStatus, response_model_exclude_none=True)
def youtube_status(p: CurrentUser, request: Request) -> dict[str, Any]:
    """Whether publishing is configured on this server, whether your YouTube channel is connected, and which."""
    return _status(_svc(request).status(p.user_id))


@router.post("/film/youtube/connect", response_model=YoutubeConnect, responses=problems(503))
def youtube_connect(p: CurrentUser, request: Request) -> dict[str, Any]:
    """Start connecting your channel (OAuth 2.0 authorization code with PKCE): open `authorize_url`; Google sends
    the browser back to the callback with a code. The state is good once, for `expires_in` seconds."""
    return dict(_svc(request).connect(p))


@router.get("/film/youtube/callback", response_model=YoutubeStatus, response_model_exclude_none=True,
            responses={**problems(400, 403, 422, 502, 503),
                       303: {"description": "A browser is sent on to the console's film page"}})
def youtube_callback(request: Request,
                     state: Annotated[str, Query(min_length=1, max_length=512)],
                     code: Annotated[str | None, Query(max_length=2048)] = None,
                     error: Annotated[str | None, Query(max_length=256)] = None) -> Any:
    """Where Google sends the browser back: the code is exchanged and the refresh token stored encrypted. A
    browser (`Accept: text/html`) is sent on to the console (`?youtube=connected`, or `?youtube_error=<code>`);
    another caller gets the connection's status as JSON, or a problem."""
    svc = _svc(request)
    browser = "text/html" in request.headers.get("accept", "")
    try:
        _, status = svc.callback(code=code, state=state, error=error)
    except errors.ReelforgeError as exc:
        if not browser:
            raise
        return RedirectResponse(f"{svc.console_url()}?{urlencode({'youtube_error': exc.code})}", status_code=303)
    if browser:
        return RedirectResponse(f"{svc.console_url()}?youtube=connected", status_code=303)
    return _status(status)


@router.delete("/film/youtube", response_model=YoutubeDisconnected, response_model_exclude_none=True)
def youtube_disconnect(p: CurrentUser, request: Request) -> dict[str, Any]:
    """Disconnect your channel: the stored tokens are deleted and the grant revoked at Google (best effort)."""
    return _status(_svc(request).disconnect(p))


@router.post("/projects/{project_id}/publish", status_code=202, response_model=JobPublic,
             responses=problems(402, 403, 404, 409, 503))
def publish_project(project_id: str, body: PublishCreate, p: CurrentUser, request: Request,
                    response: Response) -> JobPublic:
    """Queue `film.publish` (the same as `POST /v1/jobs` with that kind): the video uploaded to your connected
    channel with its title, description, tags, privacy and category, then the thumbnail and captions when given.
    The job's output: `video_id`, `url`, `thumbnail_set`, `captions_set`, ..."""
    c = container_of(request)
    job, _ = c.jobs.submit(p, KIND, {"project_id": project_id, **body.model_dump(exclude_none=True)})
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return convert.job(job)
