"""Rotoscoping over HTTP: sessions on the caller's videos, objects, prompts (answered by a worker through the
interactive call `roto.prompt`, affinity = the session), frame overlays, and propagation (the `video.rotoscope`
job). Every route answers 404 `session_not_found` for a session that is not the caller's.

| method and path | answer |
| --- | --- |
| `POST /v1/roto/sessions` | 201 the session (404 `asset_not_found`, 422 `not_a_video` and the media policy's codes) |
| `GET /v1/roto/sessions` | 200 the caller's sessions, newest first (`limit`, `cursor`) |
| `GET /v1/roto/sessions/{id}` | 200 the session: video, objects, prompts, masks, propagation status |
| `DELETE /v1/roto/sessions/{id}` | 204 |
| `POST /v1/roto/sessions/{id}/objects` | 201 a new object (409 `too_many_objects`) |
| `DELETE /v1/roto/sessions/{id}/objects/{object_id}` | 204, its prompts and masks too (404 `object_not_found`) |
| `POST /v1/roto/sessions/{id}/prompts` | 200 the frame's masks (COCO RLE) and overlay URL |
| `DELETE /v1/roto/sessions/{id}/prompts/{prompt_id}` | 204 (404 `prompt_not_found`) |
| `GET /v1/roto/sessions/{id}/frames/{n}` | 200 the overlay PNG of frame n with every object's current mask |
| `GET /v1/roto/sessions/{id}/frames/{n}/masks` | 200 the same as JSON: masks (RLE) and overlay URL |
| `POST /v1/roto/sessions/{id}/propagate` | 202 the `video.rotoscope` job (same as `POST /v1/jobs`) |
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from reelforge import errors
from reelforge.api import convert
from reelforge.api.deps import CurrentUser, container_of
from reelforge.api.openapi import problems
from reelforge.api.schemas.common import MAX_ID, Strict, iso
from reelforge.api.schemas.jobs import JobPublic
from reelforge.apps.roto.calls import FRAME_CALL, PROMPT_CALL, RELEASE_CALL
from reelforge.apps.roto.pipeline import KIND, ExportKind, FrameRange, default_exports
from reelforge.apps.roto.records import Mask, Prompt, RotoObject, Session
from reelforge.apps.roto.service import PromptInput, SessionView

log = logging.getLogger("reelforge.roto")

router = APIRouter(tags=["roto"])

FrameIndex = Annotated[int, Path(ge=0, le=MAX_ID, description="Frame index, 0-based")]
ObjectId = Annotated[int, Path(ge=0, le=MAX_ID)]


# --- schemas ------------------------------------------------------------------------------------------------
class SessionCreate(Strict):
    asset_id: str = Field(min_length=1, max_length=64, description="A video you uploaded")
    engine: str | None = Field(default=None, max_length=100, description="Default: the server's choice")
    name: str | None = Field(default=None, max_length=200)


class ObjectCreate(Strict):
    name: str | None = Field(default=None, max_length=100)


class PointIn(Strict):
    x: float = Field(description="Pixels from the left edge of the frame as shown")
    y: float = Field(description="Pixels from the top edge")
    label: int = Field(default=1, ge=-MAX_ID, le=MAX_ID, description="1: part of the object; 0: not part of it")


class PromptCreate(Strict):
    frame: int = Field(ge=-MAX_ID, le=MAX_ID, description="Frame index, 0-based")
    object_id: int | None = Field(default=None, ge=-MAX_ID, le=MAX_ID,
                                  description="An object of the session; left out, a new object is made")
    points: list[PointIn] = Field(default_factory=list, max_length=1024)
    box: tuple[float, float, float, float] | None = Field(default=None, description="[x0, y0, x1, y1]")


class PropagateCreate(Strict):
    range: FrameRange | None = Field(default=None, description="In and out markers (inclusive); default: all")
    exports: list[ExportKind] = Field(default_factory=default_exports, max_length=8)
    per_object: bool = False


class ObjectPublic(BaseModel):
    object_id: int
    name: str | None
    created_at: str | None


class PromptPublic(BaseModel):
    id: str
    object_id: int
    frame: int
    points: list[dict[str, Any]]
    box: list[float] | None
    seq: int


class MaskPublic(BaseModel):
    object_id: int
    frame: int | None = None
    source: str = Field(description="prompt: from the prompts on this frame; propagated: from propagation")
    rle: dict[str, Any] = Field(description="COCO RLE: {size: [h, w], counts}")
    area: int
    bbox: list[int] | None = Field(description="[x, y, width, height]")


class PropagationPublic(BaseModel):
    job_id: str | None
    status: str | None = Field(description="The job's status; none before the first propagation")
    progress: float | None = None
    progress_message: str | None = None
    range: list[int] | None = None
    revision: int | None = Field(default=None, description="The session revision it propagated")
    stale: bool = Field(description="Prompts changed since the last finished propagation")
    spans: list[dict[str, Any]] = []
    finished_at: str | None = None


class SessionPublic(BaseModel):
    id: str
    asset_id: str
    name: str | None
    engine: str
    width: int
    height: int
    frame_count: int
    fps: float
    duration_s: float
    video: dict[str, Any]
    revision: int
    state: str = Field(description="new (no prompt yet), prompted, propagating, propagated")
    created_at: str | None
    updated_at: str | None


class SessionDetail(SessionPublic):
    objects: list[ObjectPublic]
    prompts: list[PromptPublic]
    masks: list[MaskPublic]
    propagation: PropagationPublic


class SessionsPublic(BaseModel):
    data: list[SessionPublic]
    next_cursor: str | None


class OverlayPublic(BaseModel):
    url: str
    expires_at: str | None
    asset_id: str
    content_type: str


class FrameMasksPublic(BaseModel):
    session_id: str
    frame: int
    revision: int
    width: int
    height: int
    masks: list[MaskPublic]
    overlay: OverlayPublic
    prompt: PromptPublic | None = None
    object_created: bool = False
    timing_ms: dict[str, float] = {}
    cache: dict[str, str] = {}


# --- conversion ---------------------------------------------------------------------------------------------
def _object(o: RotoObject) -> ObjectPublic:
    return ObjectPublic(object_id=o.object_id, name=o.name, created_at=iso(o.created_at))


def _prompt(p: Prompt) -> PromptPublic:
    return PromptPublic(**p.to_dict())


def _mask(m: Mask) -> MaskPublic:
    return MaskPublic(object_id=m.object_id, frame=m.frame, source="prompt", rle=m.rle, area=m.area,
                      bbox=list(m.bbox) if m.bbox else None)


def _state(s: Session, prompted: bool, job_status: str | None) -> str:
    if job_status in ("queued", "running"):
        return "propagating"
    if s.propagation:
        return "propagated"
    return "prompted" if prompted else "new"


def _session(s: Session, *, prompted: bool = False, job_status: str | None = None) -> SessionPublic:
    return SessionPublic(id=s.id, asset_id=s.asset_id, name=s.name, engine=s.engine, width=s.width, height=s.height,
                         frame_count=s.frame_count, fps=s.fps, duration_s=s.duration_s, video=s.video,
                         revision=s.revision, state=_state(s, prompted, job_status), created_at=iso(s.created_at),
                         updated_at=iso(s.updated_at))


def _job_of(c: Any, p: Any, s: Session) -> Any:
    if not s.propagation_job_id:
        return None
    try:
        return c.jobs.get(p, s.propagation_job_id)
    except errors.NotFound:
        return None


def _detail(c: Any, p: Any, view: SessionView) -> SessionDetail:
    s = view.session
    job = _job_of(c, p, s)
    manifest = s.propagation or {}
    current = {(pr.frame, pr.object_id) for pr in view.prompts}
    masks = [m for m in view.masks if (m.frame, m.object_id) in current]
    propagation = PropagationPublic(
        job_id=s.propagation_job_id, status=str(job.status) if job is not None else None,
        progress=float(job.progress) if job is not None and job.progress is not None else None,
        progress_message=job.progress_message if job is not None else None,
        range=list(manifest.get("range") or []) or None, revision=manifest.get("revision"),
        stale=bool(manifest) and int(manifest.get("revision") or 0) != s.revision,
        spans=[{k: part.get(k) for k in ("direction", "anchor", "start", "stop", "frames")}
               for part in manifest.get("parts") or ()],
        finished_at=iso(manifest.get("finished_at")))
    base = _session(s, prompted=bool(view.prompts), job_status=str(job.status) if job is not None else None)
    return SessionDetail(**base.model_dump(), objects=[_object(o) for o in view.objects],
                         prompts=[_prompt(pr) for pr in view.prompts], masks=[_mask(m) for m in masks],
                         propagation=propagation)


def _overlay(c: Any, overlay: dict[str, Any]) -> OverlayPublic:
    signed = c.objects.presign_get(str(overlay["key"]), c.settings.storage.download_expiry_s,
                                   content_type="image/png")
    return OverlayPublic(url=signed.url, expires_at=iso(signed.expires_at) if signed.expires_at else None,
                         asset_id=str(overlay["asset_id"]), content_type="image/png")


def _frame_answer(c: Any, result: dict[str, Any], *, prompt: Prompt | None = None,
                  created: bool = False) -> dict[str, Any]:
    body = FrameMasksPublic(
        session_id=result["session_id"], frame=int(result["frame"]), revision=int(result["revision"]),
        width=int(result["width"]), height=int(result["height"]),
        masks=[MaskPublic(frame=int(result["frame"]), **m) for m in result["masks"]],
        overlay=_overlay(c, result["overlay"]), prompt=_prompt(prompt) if prompt is not None else None,
        object_created=created, timing_ms=dict(result.get("timing_ms") or {}), cache=dict(result.get("cache") or {}))
    return body.model_dump()


def _timeout(c: Any) -> float:
    return float(c.settings.roto.prompt_timeout_s)


# --- sessions -----------------------------------------------------------------------------------------------
@router.post("/roto/sessions", status_code=201, response_model=SessionPublic, responses=problems(404))
def create_session(body: SessionCreate, p: CurrentUser, request: Request, response: Response) -> SessionPublic:
    """A rotoscoping session on one of your videos: probed now (size as shown, frames, timing), decoded later on
    the workers as frames are asked for."""
    c = container_of(request)
    s = c.app("roto").create_session(p, body.asset_id, engine=body.engine, name=body.name)
    response.headers["Location"] = f"/v1/roto/sessions/{s.id}"
    return _session(s)


@router.get("/roto/sessions", response_model=SessionsPublic)
def list_sessions(p: CurrentUser, request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  cursor: Annotated[str | None, Query(max_length=200)] = None) -> SessionsPublic:
    """Your sessions, newest first; pass `next_cursor` on for more."""
    rows, nxt = container_of(request).app("roto").sessions(p, limit=limit, cursor=cursor)
    return SessionsPublic(data=[_session(s) for s in rows], next_cursor=nxt)


@router.get("/roto/sessions/{session_id}", response_model=SessionDetail, responses=problems(404))
def get_session(session_id: str, p: CurrentUser, request: Request) -> SessionDetail:
    """The session: its video, objects, prompts, the masks of prompted frames, and propagation."""
    c = container_of(request)
    return _detail(c, p, c.app("roto").view(p, session_id))


@router.delete("/roto/sessions/{session_id}", status_code=204, responses=problems(404))
async def delete_session(session_id: str, p: CurrentUser, request: Request) -> Response:
    """The session with its objects, prompts and propagated spans (the exports of finished jobs stay)."""
    c = container_of(request)
    s = await run_in_threadpool(c.app("roto").delete_session, p, session_id)
    try:  # the worker holding the session forgets it now rather than when it idles out
        await c.calls.call(RELEASE_CALL, {"session_id": s.id, "owner_id": s.owner_id}, affinity=s.id,
                           timeout_s=5.0)
    except errors.ReelforgeError as exc:
        log.info("session %s: the release call was not answered (%s); it idles out", s.id, exc.code)
    return Response(status_code=204)


# --- objects ------------------------------------------------------------------------------------------------
@router.post("/roto/sessions/{session_id}/objects", status_code=201, response_model=ObjectPublic,
             responses=problems(404, 409))
def create_object(session_id: str, p: CurrentUser, request: Request, body: ObjectCreate | None = None) -> ObjectPublic:
    """A new object to prompt (ids are small integers, per session)."""
    obj = container_of(request).app("roto").add_object(p, session_id, body.name if body else None)
    return _object(obj)


@router.delete("/roto/sessions/{session_id}/objects/{object_id}", status_code=204, responses=problems(404))
def delete_object(session_id: str, object_id: ObjectId, p: CurrentUser, request: Request) -> Response:
    """The object with its prompts and masks."""
    container_of(request).app("roto").delete_object(p, session_id, object_id)
    return Response(status_code=204)


# --- prompts ------------------------------------------------------------------------------------------------
@router.post("/roto/sessions/{session_id}/prompts", response_model=FrameMasksPublic,
             responses=problems(404, 409, 503, 504))
async def create_prompt(session_id: str, body: PromptCreate, p: CurrentUser, request: Request) -> Response:
    """Clicks (label 1 inside the object, 0 outside) and at most one box on a frame, for one object (a new one
    when `object_id` is left out). Answers the frame's mask of every object (COCO RLE) and the overlay's URL,
    computed by a worker; when no worker answers, the prompt is not kept."""
    c = container_of(request)
    svc = c.app("roto")
    data = PromptInput(frame=body.frame, object_id=body.object_id,
                       points=tuple((pt.x, pt.y, pt.label) for pt in body.points), box=body.box)
    s, prompt, created = await run_in_threadpool(svc.add_prompt, p, session_id, data)
    try:
        result = await c.calls.call(PROMPT_CALL, {"session_id": s.id, "owner_id": s.owner_id, "frame": prompt.frame,
                                                  "prompt_id": prompt.id},
                                    affinity=s.id, timeout_s=_timeout(c))
    except BaseException:
        await run_in_threadpool(svc.undo_prompt, p.user_id, prompt, object_created=created)
        raise
    return convert.respond(_frame_answer(c, result, prompt=prompt, created=created))


@router.delete("/roto/sessions/{session_id}/prompts/{prompt_id}", status_code=204, responses=problems(404))
def delete_prompt(session_id: str, prompt_id: str, p: CurrentUser, request: Request) -> Response:
    """One prompt; its frame's masks follow the prompts left (see `GET .../frames/{n}`)."""
    container_of(request).app("roto").delete_prompt(p, session_id, prompt_id)
    return Response(status_code=204)


# --- frames -------------------------------------------------------------------------------------------------
async def _frame(request: Request, p: Any, session_id: str, frame: int) -> tuple[Any, dict[str, Any]]:
    c = container_of(request)
    svc = c.app("roto")
    s = await run_in_threadpool(svc.session, p, session_id)
    svc.check_frame(s, frame)
    result = await c.calls.call(FRAME_CALL, {"session_id": s.id, "owner_id": s.owner_id, "frame": frame},
                                affinity=s.id, timeout_s=_timeout(c))
    return c, result


@router.get("/roto/sessions/{session_id}/frames/{frame}", response_class=Response, responses={
    200: {"description": "The frame with every object's current mask drawn on it", "content": {"image/png": {}}},
    **problems(404, 503, 504)})
async def frame_overlay(session_id: str, frame: FrameIndex, p: CurrentUser, request: Request) -> Response:
    """Frame n as PNG with each object's current mask on it: its prompted mask on a prompted frame, else the one
    propagation gave it."""
    c, result = await _frame(request, p, session_id, frame)
    data = await run_in_threadpool(c.objects.get_bytes, str(result["overlay"]["key"]))
    return Response(content=data, media_type="image/png",
                    headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
                             "X-Roto-Revision": str(result["revision"])})


@router.get("/roto/sessions/{session_id}/frames/{frame}/masks", response_model=FrameMasksPublic,
            responses=problems(404, 503, 504))
async def frame_masks(session_id: str, frame: FrameIndex, p: CurrentUser, request: Request) -> Response:
    """Frame n's masks (COCO RLE) and the overlay's URL, as `POST .../prompts` answers them."""
    c, result = await _frame(request, p, session_id, frame)
    return convert.respond(_frame_answer(c, result))


# --- propagation --------------------------------------------------------------------------------------------
@router.post("/roto/sessions/{session_id}/propagate", status_code=202, response_model=JobPublic,
             responses=problems(402, 404))
def propagate(session_id: str, p: CurrentUser, request: Request, response: Response,
              body: PropagateCreate | None = None) -> JobPublic:
    """Queue `video.rotoscope` for the session (the same as `POST /v1/jobs` with that kind): every prompted
    frame's masks tracked forwards and backwards between the markers, then the exports."""
    c = container_of(request)
    body = body or PropagateCreate()
    data: dict[str, Any] = {"session_id": session_id, "exports": list(body.exports), "per_object": body.per_object}
    if body.range is not None:
        data["range"] = body.range.model_dump()
    c.app("roto").session(p, session_id)
    job, _ = c.jobs.submit(p, KIND, data)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return convert.job(job)
