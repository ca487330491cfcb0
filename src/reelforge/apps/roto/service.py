"""Rotoscoping use cases on the database: sessions, objects and prompts, each the caller's own.

Ownership, in one rule: a session is seen only by its owner; anyone else (admins included) gets 404
`session_not_found`, exactly as for a session that does not exist, and so do its objects, prompts and frames.

The interactive work (masks, overlays) runs on workers (calls.py) and propagation in the `video.rotoscope` job
(pipeline.py); both read the state written here. Every change of objects or prompts bumps the session's
`revision`, so a reader can tell whether what it computed is still current.

The platform builds one `RotoService` per process (`container.app("roto")`); on a worker it also holds the
session cache of the interactive calls (`cache`), which the API process never fills.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reelforge import errors
from reelforge.applications import app_settings
from reelforge.apps.roto.ports import TASK
from reelforge.apps.roto.records import Mask, Prompt, RotoObject, Session, Span
from reelforge.apps.roto.repository import RotoRepo
from reelforge.domain.cursors import decode_cursor, encode_cursor
from reelforge.domain.types import Principal

log = logging.getLogger("reelforge.roto")

_ID = re.compile(r"^[0-9a-f]{32}$")
VIDEO_PREFIXES = ("video/", "application/octet-stream")


def check_id(value: str, what: str) -> str:
    """`value` when it is a well-formed id; otherwise the `<what>_not_found` error a missing one gets."""
    if not isinstance(value, str) or not _ID.match(value):
        raise errors.NotFound(f"{what.capitalize()} not found", code=f"{what}_not_found")
    return value


def not_found() -> errors.NotFound:
    return errors.NotFound("Session not found", code="session_not_found")


def own(session: Session | None, owner_id: str) -> Session:
    """The session when `owner_id` owns it; 404 `session_not_found` otherwise (also for admins)."""
    if session is None or session.owner_id != owner_id:
        raise not_found()
    return session


@dataclass(frozen=True)
class PromptInput:
    """One prompt as the API received it (validated here, against the session's frame)."""

    frame: int
    object_id: int | None
    points: tuple[tuple[float, float, int], ...]
    box: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class SessionView:
    """A session with everything its page shows."""

    session: Session
    objects: list[RotoObject]
    prompts: list[Prompt]
    masks: list[Mask]


@dataclass(frozen=True)
class FrameState:
    """What a worker needs to answer for one frame: the session, its objects, the prompts on that frame and the
    masks stored for it."""

    session: Session
    objects: list[RotoObject]
    prompts: list[Prompt]
    masks: list[Mask]


def media_limits(settings: Any) -> Any:
    """The platform's media policy tightened by the application's caps (`roto.max_pixels`, ...)."""
    cfg = app_settings(settings, "roto")
    return settings.media.limits().tightened(max_width=cfg.max_side, max_height=cfg.max_side,
                                             max_pixels=cfg.max_pixels, max_duration_s=cfg.max_duration_s)


def validate_prompt(session: Session, body: PromptInput, max_points: int) -> None:
    """Refuse, with a documented code, a prompt that cannot be applied to `session` (422 each)."""
    n = session.frame_count
    if body.frame < 0 or body.frame >= n:
        raise errors.ValidationFailed(f"Frame {body.frame} is outside the video (0..{n - 1})",
                                      code="frame_out_of_range", field="frame", frame_count=n)
    if not body.points and body.box is None:
        raise errors.ValidationFailed("A prompt needs at least one point or a box", code="empty_prompt",
                                      field="points")
    if len(body.points) > max_points:
        raise errors.ValidationFailed(f"A prompt holds at most {max_points} points", code="too_many_points",
                                      field="points", limit=max_points)
    w, h = session.width, session.height
    for i, (x, y, label) in enumerate(body.points):
        if label not in (0, 1):
            raise errors.ValidationFailed(f"points[{i}].label must be 1 (object) or 0 (not the object)",
                                          code="invalid_label", field=f"points[{i}].label")
        if not (math.isfinite(x) and math.isfinite(y)) or not (0 <= x < w and 0 <= y < h):
            raise errors.ValidationFailed(f"points[{i}] ({x:g}, {y:g}) is outside the {w}x{h} frame",
                                          code="point_outside_frame", field=f"points[{i}]", width=w, height=h)
    if body.box is not None:
        x0, y0, x1, y1 = body.box
        if not all(math.isfinite(v) for v in body.box):
            raise errors.ValidationFailed("box must hold four numbers", code="box_outside_frame", field="box")
        if x1 <= x0 or y1 <= y0:
            raise errors.ValidationFailed("box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1",
                                          code="box_inverted", field="box")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise errors.ValidationFailed(f"box {list(body.box)} reaches outside the {w}x{h} frame",
                                          code="box_outside_frame", field="box", width=w, height=h)


class RotoService:
    """The application's service (`container.app("roto")`)."""

    def __init__(self, container: Any) -> None:
        self.c = container
        self.settings = container.settings
        self.store = container.store
        self._cache: Any = None
        self._cache_lock = threading.Lock()

    @property
    def cfg(self) -> Any:
        """The application's settings section (`settings.roto`)."""
        return app_settings(self.settings, "roto")

    @property
    def cache(self) -> Any:
        """The worker-side session cache (calls.py), built on first use."""
        if self._cache is None:
            with self._cache_lock:
                if self._cache is None:
                    from reelforge.apps.roto.calls import SessionCache

                    self._cache = SessionCache(self.settings)
        return self._cache

    def sweep_cache(self) -> int:
        """Drop idle sessions from this process's cache (nothing when it was never used); how many went."""
        return self._cache.sweep() if self._cache is not None else 0

    def drop_cached(self, session_ids: Sequence[str]) -> int:
        """Forget these sessions in this process's cache (their files too); how many were open."""
        if self._cache is None:
            return 0
        return sum(1 for sid in session_ids if self._cache.drop(sid))

    # --- engines ---------------------------------------------------------------------------------------------
    def engine_for(self, name: str | None) -> str:
        """The engine a new session uses: the one named (it must exist and be able to run), else the setting's,
        else the first available."""
        models = self.c.models
        known = [m for m in models.list(TASK)]
        if name:
            info = next((m for m in known if m.name == name), None)
            if info is None:
                names = ", ".join(m.name for m in known) or "none"
                raise errors.ValidationFailed(f"Unknown engine {name!r}; known: {names}", code="unknown_engine",
                                              field="engine")
            if not info.available:
                raise errors.ModelUnavailable(info.reason or f"{name} cannot run here", field="engine", model=name)
            return name
        wanted = self.cfg.engine
        if wanted:
            return self.engine_for(wanted)
        for m in known:
            if m.available:
                return str(m.name)
        raise errors.ModelUnavailable("No rotoscoping engine can run here", field="engine")

    # --- sessions --------------------------------------------------------------------------------------------
    def create_session(self, p: Principal, asset_id: str, *, engine: str | None = None,
                       name: str | None = None) -> Session:
        """A session on the caller's video (404 for anyone else's): probed now (size after rotation, frames,
        timing) under the media policy; frames are decoded later, on the workers, when first asked for."""
        asset = self.c.assets.owned_asset(p.user_id, asset_id)
        if not asset.content_type.startswith(VIDEO_PREFIXES):
            raise errors.ValidationFailed(f"The asset is {asset.content_type}, not a video", code="not_a_video",
                                          field="asset_id")
        chosen = self.engine_for(engine)
        facts = self.c.media.check_video(asset, media_limits(self.settings))
        rotation = int(facts.get("rotation") or 0)
        coded_w, coded_h = int(facts["width"]), int(facts["height"])
        width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
        frames = int(facts["frames"])
        if frames <= 0:
            raise errors.ValidationFailed("The video has no frames", code="empty_video", field="asset_id")
        video = {"rotation": rotation, "vfr": bool(facts.get("vfr")), "codec": facts.get("codec"),
                 "coded_width": coded_w, "coded_height": coded_h, "time_base": facts.get("time_base"),
                 "start_pts": facts.get("start_pts"), "pix_fmt": facts.get("pix_fmt"),
                 "format": facts.get("format_name"), "sha256": asset.sha256, "size": asset.size,
                 "filename": asset.filename,
                 "has_audio": any(s.get("type") == "audio" for s in facts.get("streams") or ())}
        duration = float(facts.get("video_duration_s") or facts.get("duration_s") or 0.0)
        with self.store.tx() as tx:
            return RotoRepo(tx).add_session(owner_id=p.user_id, asset_id=asset.id, name=name, engine=chosen,
                                            width=width, height=height, frame_count=frames,
                                            fps=float(facts.get("fps") or 0.0), duration_s=duration, video=video)

    def session(self, p: Principal, session_id: str) -> Session:
        check_id(session_id, "session")
        with self.store.tx(write=False) as tx:
            return own(RotoRepo(tx).session(session_id), p.user_id)

    def owned(self, owner_id: str, session_id: str) -> Session:
        """For steps and calls: the session if `owner_id` owns it (404 otherwise)."""
        check_id(session_id, "session")
        with self.store.tx(write=False) as tx:
            return own(RotoRepo(tx).session(session_id), owner_id)

    def view(self, p: Principal, session_id: str) -> SessionView:
        check_id(session_id, "session")
        with self.store.tx(write=False) as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id), p.user_id)
            return SessionView(s, repo.objects(s.id), repo.prompts(s.id), repo.masks(s.id))

    def sessions(self, p: Principal, *, limit: int = 50, cursor: str | None = None) -> tuple[list[Session], str | None]:
        after = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = RotoRepo(tx).sessions(p.user_id, limit=limit + 1, cursor=after)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1].created_at, rows[-1].id)
        return rows, nxt

    def delete_session(self, p: Principal, session_id: str) -> Session:
        """The session, its objects, prompts and masks, and the propagated spans it stored (their objects too).
        Exports a job produced stay: they are the job's outputs."""
        check_id(session_id, "session")
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id, lock=True), p.user_id)
            spans = repo.spans(s.id)
            repo.delete_session(s.id)
        self.c.assets.delete_owned(s.owner_id, [sp.asset_id for sp in spans])
        return s

    # --- objects ---------------------------------------------------------------------------------------------
    def _new_object(self, repo: RotoRepo, s: Session, name: str | None) -> RotoObject:
        if len(repo.objects(s.id)) >= self.cfg.max_objects:
            raise errors.Conflict(f"A session holds at most {self.cfg.max_objects} objects", code="too_many_objects",
                                  limit=self.cfg.max_objects)
        object_id = s.next_object_id
        obj = repo.add_object(s.id, object_id, name)
        repo.bump(s.id, next_object_id=object_id + 1)
        return obj

    def add_object(self, p: Principal, session_id: str, name: str | None = None) -> RotoObject:
        check_id(session_id, "session")
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id, lock=True), p.user_id)
            return self._new_object(repo, s, name)

    def delete_object(self, p: Principal, session_id: str, object_id: int) -> None:
        """The object with its prompts and masks; 404 `object_not_found` when the session has no such object."""
        check_id(session_id, "session")
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id, lock=True), p.user_id)
            if repo.object(s.id, object_id) is None:
                raise errors.NotFound(f"The session has no object {object_id}", code="object_not_found")
            repo.delete_object(s.id, object_id)
            repo.bump(s.id)

    # --- prompts ---------------------------------------------------------------------------------------------
    def add_prompt(self, p: Principal, session_id: str, body: PromptInput) -> tuple[Session, Prompt, bool]:
        """Store a prompt (a new object when `object_id` is None). Returns the session as it is now, the prompt,
        and whether the object was made for it."""
        check_id(session_id, "session")
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id, lock=True), p.user_id)
            validate_prompt(s, body, self.cfg.max_points)
            if repo.count_prompts(s.id) >= self.cfg.max_prompts:
                raise errors.Conflict(f"A session holds at most {self.cfg.max_prompts} prompts",
                                      code="too_many_prompts", limit=self.cfg.max_prompts)
            created = False
            if body.object_id is None:
                object_id = self._new_object(repo, s, None).object_id
                created = True
            else:
                object_id = body.object_id
                if repo.object(s.id, object_id) is None:
                    raise errors.ValidationFailed(f"The session has no object {object_id}; create it first or "
                                                  "leave object_id out", code="unknown_object", field="object_id")
            seq = repo.bump(s.id)
            prompt = repo.add_prompt(session_id=s.id, object_id=object_id, frame=body.frame, points=body.points,
                                     box=body.box, seq=seq)
            return own(repo.session(s.id), p.user_id), prompt, created

    def undo_prompt(self, owner_id: str, prompt: Prompt, *, object_created: bool) -> None:
        """Take back a prompt whose answer failed (and the object made for it), so the session stays as its user
        last saw it."""
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            if own(repo.session(prompt.session_id, lock=True), owner_id) is None:
                return
            repo.delete_prompt(prompt.id)
            if object_created:
                repo.delete_object(prompt.session_id, prompt.object_id)
            repo.bump(prompt.session_id)

    def delete_prompt(self, p: Principal, session_id: str, prompt_id: str) -> Prompt:
        """Remove one prompt; the masks of its frame follow the prompts left (recomputed when next asked for)."""
        check_id(session_id, "session")
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id, lock=True), p.user_id)
            prompt = repo.prompt(s.id, prompt_id) if _ID.match(prompt_id or "") else None
            if prompt is None:
                raise errors.NotFound("Prompt not found", code="prompt_not_found")
            repo.delete_prompt(prompt.id)
            if not any(q.object_id == prompt.object_id for q in repo.prompts(s.id, frame=prompt.frame)):
                repo.delete_masks(s.id, frame=prompt.frame, object_id=prompt.object_id)
            repo.bump(s.id)
            return prompt

    def check_frame(self, s: Session, frame: int) -> None:
        if frame < 0 or frame >= s.frame_count:
            raise errors.ValidationFailed(f"Frame {frame} is outside the video (0..{s.frame_count - 1})",
                                          code="frame_out_of_range", field="frame", frame_count=s.frame_count)

    # --- for workers -------------------------------------------------------------------------------------------
    def frame_state(self, owner_id: str, session_id: str, frame: int) -> FrameState:
        """One read: the session (its owner's only), objects, the prompts and stored masks of `frame`."""
        check_id(session_id, "session")
        with self.store.tx(write=False) as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id), owner_id)
            self.check_frame(s, frame)
            return FrameState(s, repo.objects(s.id), repo.prompts(s.id, frame=frame), repo.masks(s.id, frame=frame))

    def state(self, owner_id: str, session_id: str) -> FrameState:
        """Every prompt and stored mask of the session (propagation plans from it)."""
        check_id(session_id, "session")
        with self.store.tx(write=False) as tx:
            repo = RotoRepo(tx)
            s = own(repo.session(session_id), owner_id)
            return FrameState(s, repo.objects(s.id), repo.prompts(s.id), repo.masks(s.id))

    def put_masks(self, owner_id: str, session_id: str, masks: Sequence[Mask]) -> None:
        """Store prompted masks (one transaction); a session deleted meanwhile takes none."""
        if not masks:
            return
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            s = repo.session(session_id)
            if s is None or s.owner_id != owner_id:
                return
            known = {o.object_id for o in repo.objects(s.id)}
            for m in masks:
                if m.object_id in known:
                    repo.put_mask(m)

    def span(self, session_id: str, key: str) -> Span | None:
        with self.store.tx(write=False) as tx:
            return RotoRepo(tx).span(session_id, key)

    def add_span(self, span: Span) -> Span:
        from reelforge.ports.repositories import DuplicateKey

        try:
            with self.store.tx() as tx:
                return RotoRepo(tx).add_span(span)
        except DuplicateKey:  # another attempt recorded the same span meanwhile: the first one stays
            found = self.span(span.session_id, span.key)
            assert found is not None
            return found

    def set_propagation(self, owner_id: str, session_id: str, *, job_id: str | None,
                        manifest: dict[str, Any] | None) -> list[Span]:
        """Record the propagation a job started (`manifest` None) or finished; on finishing, spans no manifest
        names any more are removed (rows and objects). Returns the removed spans."""
        with self.store.tx() as tx:
            repo = RotoRepo(tx)
            s = repo.session(session_id, lock=True)
            if s is None or s.owner_id != owner_id:
                raise not_found()
            if manifest is None:
                repo.update_session(s.id, propagation_job_id=job_id)
                return []
            keep = {part["key"] for part in manifest.get("parts", ())}
            stale = [sp for sp in repo.spans(s.id) if sp.key not in keep]
            repo.delete_spans(s.id, [sp.key for sp in stale])
            repo.update_session(s.id, propagation=manifest, propagation_job_id=job_id)
        self.c.assets.delete_owned(owner_id, [sp.asset_id for sp in stale])
        return stale

    # --- statistics ------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self.store.tx(write=False) as tx:
            return RotoRepo(tx).count_sessions()
