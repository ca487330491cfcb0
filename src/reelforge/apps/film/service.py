"""The film studio's use cases: projects (script, characters, backgrounds, music), read-only shares, and the
script analysis.

Access, in one place (`_access`): a project's owner may do everything; an account it is shared with (by user
id, or by an e-mail address that account has) may read it, and gets 403 `read_only_share` on every change;
anyone else gets 404 `project_not_found`, exactly as for a project that does not exist. Admins have no
special access to other users' projects.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from reelforge import errors
from reelforge.applications import app_settings
from reelforge.apps.film import llm
from reelforge.apps.film.records import Project, Share
from reelforge.apps.film.repository import FilmRepo
from reelforge.apps.film.script import MOODS, Pace, breakdown, name_key, parse
from reelforge.apps.film.settings import FilmSettings
from reelforge.domain.cursors import decode_cursor, encode_cursor
from reelforge.domain.records import new_id
from reelforge.domain.types import Principal
from reelforge.ports.repositories import DuplicateKey, Store

log = logging.getLogger("reelforge.film")

_ID = re.compile(r"^[0-9a-f]{32}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
OWNER, VIEWER = "owner", "viewer"
SCOPES = ("all", "owned", "shared")
# Project fields whose change makes a stored breakdown stale.
_ANALYZED_FIELDS = ("script", "script_format", "characters", "backgrounds")


@dataclass(frozen=True)
class Access:
    project: Project
    role: str  # owner | viewer


@dataclass(frozen=True)
class Page:
    items: list[Access]
    next_cursor: str | None


def check_id(value: str, what: str) -> str:
    """`value` when it is a well-formed id; otherwise the `<what>_not_found` error a missing one gets."""
    if not isinstance(value, str) or not _ID.match(value):
        raise errors.NotFound(f"{what.capitalize()} not found", code=f"{what}_not_found")
    return value


class FilmService:
    """Projects, shares and analysis over the platform's database and assets."""

    def __init__(self, store: Store, settings: Any, *, assets: Any, secrets: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.assets = assets
        self.secrets = secrets  # the platform's SecretBox (YouTube tokens at rest)

    @cached_property
    def youtube(self) -> Any:
        """Publishing to YouTube (`youtube_service.YoutubeService`)."""
        from reelforge.apps.film.youtube_service import YoutubeService

        return YoutubeService(self)

    @property
    def cfg(self) -> FilmSettings:
        """The application's settings section (`settings.film`)."""
        cfg: FilmSettings = app_settings(self.settings, "film")
        return cfg

    # --- catalogue --------------------------------------------------------------------------------------------
    def voices(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"data": [v.model_dump() for v in cfg.voices], "default": cfg.default_voice,
                "rate": {"min": cfg.rate_min, "max": cfg.rate_max, "default": 1.0},
                "pitch": {"min": cfg.pitch_min, "max": cfg.pitch_max, "default": 0.0}}

    @staticmethod
    def moods() -> list[str]:
        return list(MOODS)

    # --- access -----------------------------------------------------------------------------------------------
    @staticmethod
    def _access(repo: FilmRepo, p: Principal, project_id: str, *, write: bool = False,
                lock: bool = False) -> Access:
        check_id(project_id, "project")
        project = repo.project(project_id, lock=lock)
        if project is None:
            raise errors.NotFound("Project not found", code="project_not_found")
        if project.owner_id == p.user_id:
            return Access(project, OWNER)
        if repo.find_share(project.id, user_id=p.user_id, email=p.email.strip().lower()) is None:
            raise errors.NotFound("Project not found", code="project_not_found")
        if write:
            raise errors.Forbidden("This project is shared with you to read; only its owner may change it",
                                   code="read_only_share")
        return Access(project, VIEWER)

    def owned_project(self, owner_id: str, project_id: str) -> Project:
        """For pipelines: the project, when ``owner_id`` owns it (404 `project_not_found` otherwise)."""
        check_id(project_id, "project")
        with self.store.tx(write=False) as tx:
            project = FilmRepo(tx).project(project_id)
        if project is None or project.owner_id != owner_id:
            raise errors.NotFound("Project not found", code="project_not_found")
        return project

    def set_last_render(self, owner_id: str, project_id: str, job_id: str) -> None:
        """Note the render job that renders the project now (its page shows that job and its film)."""
        with self.store.tx() as tx:
            repo = FilmRepo(tx)
            project = repo.project(project_id)
            if project is not None and project.owner_id == owner_id and project.last_render_job_id != job_id:
                repo.update_project(project_id, last_render_job_id=job_id, updated_at=project.updated_at)

    # --- projects ---------------------------------------------------------------------------------------------
    def create(self, p: Principal, values: Mapping[str, Any]) -> Project:
        data = self._checked(p.user_id, values, creating=True)
        with self.store.tx() as tx:
            return FilmRepo(tx).add_project(id=new_id(), owner_id=p.user_id, **data)

    def get(self, p: Principal, project_id: str) -> Access:
        with self.store.tx(write=False) as tx:
            return self._access(FilmRepo(tx), p, project_id)

    def projects(self, p: Principal, *, scope: str = "all", limit: int | None = None,
             cursor: str | None = None) -> Page:
        limit = limit or self.cfg.page_size
        after = decode_cursor(cursor)
        with self.store.tx(write=False) as tx:
            rows = FilmRepo(tx).projects(user_id=p.user_id, email=p.email.strip().lower(), scope=scope,
                                         limit=limit + 1, after=after)
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor(rows[-1].created_at, rows[-1].id)
        return Page([Access(r, OWNER if r.owner_id == p.user_id else VIEWER) for r in rows], nxt)

    def update(self, p: Principal, project_id: str, values: Mapping[str, Any]) -> Project:
        with self.store.tx(write=False) as tx:
            self._access(FilmRepo(tx), p, project_id, write=True)
        data = self._checked(p.user_id, values, creating=False)
        with self.store.tx() as tx:
            repo = FilmRepo(tx)
            current = self._access(repo, p, project_id, write=True, lock=True).project
            if data:
                if any(k in data for k in _ANALYZED_FIELDS):
                    data["revision"] = current.revision + 1
                repo.update_project(project_id, **data)
            updated = repo.project(project_id)
        assert updated is not None
        return updated

    def delete(self, p: Principal, project_id: str) -> None:
        """The project and its shares; the assets it names stay (they are the owner's, maybe used elsewhere)."""
        with self.store.tx() as tx:
            repo = FilmRepo(tx)
            self._access(repo, p, project_id, write=True, lock=True)
            repo.delete_project(project_id)

    def asset_urls(self, project: Project) -> dict[str, str]:
        """Signed download URLs of the images and audio the project names (those that still exist), so that
        the owner and the accounts it is shared with can see them."""
        ids = [c["portrait_asset_id"] for c in project.characters if c.get("portrait_asset_id")]
        ids += [b["asset_id"] for b in project.backgrounds]
        ids += [m["asset_id"] for m in project.music if m.get("asset_id")]
        if not ids:
            return {}
        found = []
        with self.store.tx(write=False) as tx:
            for asset_id in dict.fromkeys(ids):
                asset = tx.assets.asset(asset_id, owner_id=project.owner_id)
                if asset is not None:
                    found.append(asset)
        return {a.id: self.assets.download_url(a).url for a in found}

    # --- input checks -----------------------------------------------------------------------------------------
    def _checked(self, owner_id: str, values: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """The columns to write for validated `values` (request fields already typed by the route's schema):
        the script's size, voices and their ranges, unique character names, and every asset the owner's and
        of the right kind."""
        cfg = self.cfg
        data: dict[str, Any] = {}
        for key in ("title", "description", "script_format"):
            if key in values and values[key] is not None:
                data[key] = values[key]
        if "script" in values and values["script"] is not None:
            script = str(values["script"])
            size = len(script.encode("utf-8"))
            if size > cfg.max_script_bytes:
                raise errors.PayloadTooLarge(
                    f"The script is {size} bytes; at most {cfg.max_script_bytes} are allowed",
                    code="script_too_large", field="script", limit=cfg.max_script_bytes, size=size)
            data["script"] = script
            data["script_bytes"] = size
        elif creating:
            data["script"], data["script_bytes"] = "", 0
        if creating:
            data.setdefault("description", "")
            data.setdefault("script_format", "auto")
        wanted: list[tuple[str, str, str]] = []  # (asset id, kind, field)
        if values.get("characters") is not None:
            data["characters"] = self._characters(values["characters"], wanted)
        elif creating:
            data["characters"] = []
        if values.get("backgrounds") is not None:
            items = list(values["backgrounds"])
            self._count(items, cfg.max_backgrounds, "backgrounds")
            out = []
            for i, b in enumerate(items):
                wanted.append((b["asset_id"], "image", f"backgrounds[{i}].asset_id"))
                out.append({"name": b["name"], "asset_id": b["asset_id"], "description": b.get("description") or ""})
            data["backgrounds"] = out
        elif creating:
            data["backgrounds"] = []
        if values.get("music") is not None:
            items = list(values["music"])
            self._count(items, cfg.max_music, "music")
            out = []
            for i, m in enumerate(items):
                if m.get("asset_id"):
                    wanted.append((m["asset_id"], "audio", f"music[{i}].asset_id"))
                out.append({"name": m.get("name") or "", "asset_id": m.get("asset_id"), "mood": m.get("mood")})
            data["music"] = out
        elif creating:
            data["music"] = []
        self._check_assets(owner_id, wanted)
        return data

    @staticmethod
    def _count(items: Sequence[Any], limit: int, what: str) -> None:
        if len(items) > limit:
            raise errors.ValidationFailed(f"At most {limit} {what} per project", code="too_many_items",
                                          field=what, limit=limit)

    def _characters(self, items: Sequence[Mapping[str, Any]], wanted: list[tuple[str, str, str]]
                    ) -> list[dict[str, Any]]:
        cfg = self.cfg
        self._count(items, cfg.max_characters, "characters")
        voices = cfg.voice_ids()
        seen: dict[str, str] = {}
        out = []
        for i, c in enumerate(items):
            names = [c["name"], *(c.get("aliases") or [])]
            for n in names:
                key = name_key(n)
                if key in seen:
                    raise errors.ValidationFailed(
                        f"{n!r} names two characters (or is given twice)", code="duplicate_character",
                        field=f"characters[{i}]", name=n)
                seen[key] = c["name"]
            voice = dict(c.get("voice") or {})
            voice_id = voice.get("id") or cfg.default_voice
            if voice_id not in voices:
                raise errors.ValidationFailed(
                    f"Unknown voice {voice_id!r}; GET /v1/film/voices lists them", code="unknown_voice",
                    field=f"characters[{i}].voice.id", voice=voice_id)
            rate = float(voice["rate"]) if voice.get("rate") is not None else 1.0
            pitch = float(voice["pitch"]) if voice.get("pitch") is not None else 0.0
            if not cfg.rate_min <= rate <= cfg.rate_max:
                raise errors.ValidationFailed(
                    f"A voice's rate is between {cfg.rate_min} and {cfg.rate_max}", code="voice_out_of_range",
                    field=f"characters[{i}].voice.rate", min=cfg.rate_min, max=cfg.rate_max)
            if not cfg.pitch_min <= pitch <= cfg.pitch_max:
                raise errors.ValidationFailed(
                    f"A voice's pitch is between {cfg.pitch_min} and {cfg.pitch_max} semitones",
                    code="voice_out_of_range", field=f"characters[{i}].voice.pitch", min=cfg.pitch_min,
                    max=cfg.pitch_max)
            portrait = c.get("portrait_asset_id")
            if portrait:
                wanted.append((portrait, "image", f"characters[{i}].portrait_asset_id"))
            out.append({"name": c["name"], "aliases": list(c.get("aliases") or []),
                        "description": c.get("description") or "", "portrait_asset_id": portrait or None,
                        "voice": {"id": voice_id, "rate": rate, "pitch": pitch}})
        return out

    def _check_assets(self, owner_id: str, wanted: Sequence[tuple[str, str, str]]) -> None:
        if not wanted:
            return
        with self.store.tx(write=False) as tx:
            for asset_id, kind, where in wanted:
                asset = tx.assets.asset(asset_id, owner_id=owner_id) if _ID.match(asset_id) else None
                if asset is None:
                    raise errors.ValidationFailed(f"No asset {asset_id!r} of yours", code="asset_not_found",
                                                  field=where, asset_id=asset_id)
                if not asset.content_type.lower().startswith(f"{kind}/"):
                    raise errors.ValidationFailed(
                        f"The asset is {asset.content_type}, not {'an image' if kind == 'image' else 'audio'}",
                        code="invalid_asset_type", field=where, asset_id=asset_id, expected=f"{kind}/*")
                if asset.lifecycle == "temporary":
                    raise errors.ValidationFailed(
                        "The asset is temporary and will expire; a project may name only kept assets",
                        code="temporary_asset", field=where, asset_id=asset_id)

    # --- shares -----------------------------------------------------------------------------------------------
    def share(self, p: Principal, project_id: str, *, email: str | None = None,
              user_id: str | None = None) -> tuple[Share, bool]:
        """Share the project read-only with an account (by id) or an address (any account that has it, now or
        once it is registered: nobody learns here whether an address has an account). Returns the share and
        whether it is new; sharing twice with the same account or address gives the existing share."""
        if (email is None) == (user_id is None):
            raise errors.ValidationFailed("Give either email or user_id", code="validation_error", field="email")
        address = None
        if email is not None:
            address = email.strip().lower()
            if not _EMAIL.match(address) or len(address) > 320:
                raise errors.ValidationFailed("Not a valid email address", code="invalid_email", field="email")
            if address == p.email.strip().lower():
                raise errors.ValidationFailed("The project is yours already", code="share_with_owner",
                                              field="email")
        elif user_id == p.user_id:
            raise errors.ValidationFailed("The project is yours already", code="share_with_owner", field="user_id")
        for _ in range(2):  # a concurrent share of the same account loses the insert and returns the winner's
            try:
                with self.store.tx() as tx:
                    repo = FilmRepo(tx)
                    project = self._access(repo, p, project_id, write=True, lock=True).project
                    target = user_id
                    if address is not None:
                        account = tx.accounts.user_by_email(address)
                        target = account.id if account is not None else None
                    elif user_id is None or not _ID.match(user_id) or tx.accounts.user(user_id) is None:
                        raise errors.ValidationFailed("No such account", code="user_not_found", field="user_id")
                    if target == p.user_id:
                        raise errors.ValidationFailed("The project is yours already", code="share_with_owner",
                                                      field="email" if address else "user_id")
                    existing = repo.find_share(project.id, user_id=target, email=address)
                    if existing is not None:
                        return existing, False
                    if repo.count_shares(project.id) >= self.cfg.max_shares:
                        raise errors.Conflict(f"A project may be shared with at most {self.cfg.max_shares} people",
                                              code="share_limit_reached", limit=self.cfg.max_shares)
                    return repo.add_share(id=new_id(), project_id=project.id, owner_id=project.owner_id,
                                          user_id=target, email=address), True
            except DuplicateKey:
                continue
        raise errors.Conflict("The share changed while it was being made; try again", code="conflict")

    def shares(self, p: Principal, project_id: str) -> list[Share]:
        """The project's shares: its owner's to see (the accounts it is shared with get 403)."""
        with self.store.tx(write=False) as tx:
            repo = FilmRepo(tx)
            self._access(repo, p, project_id, write=True)
            return repo.shares(project_id)

    def unshare(self, p: Principal, project_id: str, share_id: str) -> None:
        """Remove a share: the owner may remove any; an account it is shared with may remove its own (leave)."""
        with self.store.tx() as tx:
            repo = FilmRepo(tx)
            access = self._access(repo, p, project_id)
            check_id(share_id, "share")
            share = repo.share(share_id)
            if share is None or share.project_id != access.project.id:
                raise errors.NotFound("Share not found", code="share_not_found")
            if access.role != OWNER and not (share.user_id == p.user_id
                                             or (share.email is not None and share.email == p.email.lower())):
                raise errors.Forbidden("Only the project's owner may remove another account's share",
                                       code="read_only_share")
            repo.delete_share(share.id)

    # --- analysis ---------------------------------------------------------------------------------------------
    def analyze(self, p: Principal, project_id: str) -> Project:
        """Parse the script into its breakdown (scenes, characters, dialogue, action, durations), enrich it
        with the language model when one is configured, and store it on the project."""
        with self.store.tx(write=False) as tx:
            project = self._access(FilmRepo(tx), p, project_id, write=True).project
        doc = self.breakdown_of(project)
        doc = llm.apply(doc, llm.enrich(self.cfg.llm, doc))
        with self.store.tx() as tx:
            repo = FilmRepo(tx)
            current = self._access(repo, p, project_id, write=True, lock=True).project
            # A newer revision's breakdown, made meanwhile, is not replaced by this older one.
            if current.analyzed_revision is None or current.analyzed_revision <= project.revision:
                doc["analyzed_at"] = tx.now()
                repo.update_project(project_id, breakdown=doc, analyzed_revision=project.revision,
                                    analyzed_at=doc["analyzed_at"], updated_at=current.updated_at)
            updated = repo.project(project_id)
        assert updated is not None
        return updated

    def breakdown_of(self, project: Project) -> dict[str, Any]:
        """The parser's breakdown of the project's script (no model), checked against its characters."""
        text = project.script or ""
        if not text.strip():
            raise errors.ValidationFailed("The project has no script to analyse", code="empty_script",
                                          field="script")
        characters = project.characters
        canonical: dict[str, str] = {}
        rates: dict[str, float] = {}
        for c in characters:
            for n in [c["name"], *(c.get("aliases") or [])]:
                canonical[name_key(n)] = c["name"]
            rates[name_key(c["name"])] = float((c.get("voice") or {}).get("rate") or 1.0)
        script = parse(text, project.script_format, characters=[n for c in characters
                                                                 for n in [c["name"], *(c.get("aliases") or [])]])
        if not any(sc.has_content() for sc in script.scenes):
            raise errors.ValidationFailed("The script has no action or dialogue", code="empty_script",
                                          field="script")
        if characters:
            unknown = [n for n in script.speakers() if name_key(n) not in canonical]
            if unknown:
                raise errors.ValidationFailed(
                    "Dialogue is given to characters the project does not define: " + ", ".join(unknown[:20]),
                    code="unknown_character", names=unknown, field="characters")
        cfg = self.cfg
        pace = Pace(words_per_minute=cfg.words_per_minute, action_words_per_minute=cfg.action_words_per_minute,
                    line_pause_s=cfg.line_pause_s, min_scene_seconds=cfg.min_scene_seconds)
        doc = breakdown(script, pace=pace, rates=rates, canonical=canonical, backgrounds=project.backgrounds)
        defined = {name_key(c["name"]): c for c in characters}
        for st in doc["characters"]:
            own = defined.get(name_key(st["name"]))
            st["defined"] = own is not None
            st["voice"] = own["voice"] if own is not None else None
            st["portrait_asset_id"] = own.get("portrait_asset_id") if own is not None else None
        doc["proposed_characters"] = [] if characters else [
            {"name": st["name"], "lines": st["lines"], "words": st["words"], "scenes": st["scenes"]}
            for st in doc["characters"]]
        doc["requested_format"] = project.script_format
        doc["revision"] = project.revision
        doc["script_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        doc["notes"] = script.notes[:100]
        return doc
