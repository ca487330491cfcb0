"""Film studio routes: `/v1/projects` (create, list, read, update, delete), their read-only shares, the script
analysis, and the voices and moods a project may use (`/v1/film/...`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, StringConstraints, model_validator

from reelforge.api import convert
from reelforge.api.deps import Container, CurrentUser
from reelforge.api.openapi import problems
from reelforge.api.schemas.common import Strict, iso
from reelforge.api.schemas.jobs import JobPublic
from reelforge.apps.film.records import Project, Share
from reelforge.apps.film.render import KIND as RENDER_KIND
from reelforge.apps.film.render import RenderOptions
from reelforge.apps.film.script import MOODS
from reelforge.apps.film.service import OWNER, Access

router = APIRouter(tags=["film"])

Id = Annotated[str, Field(min_length=1, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[^\r\n]*\w[^\r\n]*$")]
Mood = Literal["calm", "tense", "sad", "joyful", "romantic", "mysterious", "epic", "playful"]
ScriptFormat = Literal["auto", "fountain", "prose"]
# A script keeps its whitespace (Fountain gives meaning to indentation and to a line of two spaces).
ScriptText = Annotated[str, StringConstraints(strip_whitespace=False)]
# Hard caps of the request's shape; settings may lower them (`film.max_characters`, ...).
MAX_ITEMS = 1000


# --- schemas ----------------------------------------------------------------------------------------------------
class VoiceIn(Strict):
    id: str | None = Field(default=None, min_length=1, max_length=64,
                           description="A voice of GET /v1/film/voices; the default voice when absent")
    rate: float | None = Field(default=None, description="Speaking rate, a multiplier of the normal pace "
                                                         "(film.rate_min to film.rate_max; 0.5 to 2.0 by default)")
    pitch: float | None = Field(default=None, description="Pitch shift in semitones (film.pitch_min to "
                                                          "film.pitch_max; -12 to 12 by default)")


class CharacterIn(Strict):
    name: Name
    aliases: list[Name] = Field(default_factory=list, max_length=10,
                                description="Other names the script gives the character (cues, prose)")
    description: str = Field(default="", max_length=2000)
    portrait_asset_id: Id | None = Field(default=None, description="An image asset of yours")
    voice: VoiceIn | None = None


class BackgroundIn(Strict):
    name: Name = Field(description="A scene whose location is (or names) this gets the background")
    asset_id: Id = Field(description="An image asset of yours")
    description: str = Field(default="", max_length=2000)


class MusicIn(Strict):
    name: str = Field(default="", max_length=200)
    asset_id: Id | None = Field(default=None, description="An audio asset of yours")
    mood: Mood | None = Field(default=None, description="Or a score to generate in this mood")

    @model_validator(mode="after")
    def _one_source(self) -> MusicIn:
        if (self.asset_id is None) == (self.mood is None):
            raise ValueError("give either asset_id (an audio asset) or mood (a generated score)")
        return self


class ProjectFields(Strict):
    description: str | None = Field(default=None, max_length=5000)
    script: ScriptText | None = Field(default=None, description="The script's text (film.max_script_bytes at most)")
    script_format: ScriptFormat | None = Field(default=None, description="fountain, prose, or auto (detected)")
    characters: list[CharacterIn] | None = Field(default=None, max_length=MAX_ITEMS)
    backgrounds: list[BackgroundIn] | None = Field(default=None, max_length=MAX_ITEMS)
    music: list[MusicIn] | None = Field(default=None, max_length=MAX_ITEMS)


class ProjectCreate(ProjectFields):
    title: str = Field(min_length=1, max_length=200)


class ProjectUpdate(ProjectFields):
    """Fields to change; a list given replaces the project's list. A field left out is kept; null is refused
    (an empty string or list clears)."""

    title: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _no_nulls(self) -> ProjectUpdate:
        nulls = sorted(k for k in self.model_fields_set if getattr(self, k) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} may not be null; leave a field out to keep it")
        return self


class ShareCreate(Strict):
    email: str | None = Field(default=None, min_length=3, max_length=320)
    user_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_target(self) -> ShareCreate:
        if (self.email is None) == (self.user_id is None):
            raise ValueError("give either email or user_id")
        return self


class Counts(BaseModel):
    characters: int
    backgrounds: int
    music: int


class ProjectSummary(BaseModel):
    id: str
    owner_id: str
    role: Literal["owner", "viewer"]
    title: str
    description: str
    script_format: str
    script_bytes: int
    counts: Counts
    revision: int
    analyzed_at: str | None
    last_render_job_id: str | None = Field(None, description="The film.render job that rendered it last")
    analysis_stale: bool
    created_at: str | None
    updated_at: str | None


class ProjectDetail(ProjectSummary):
    script: str
    characters: list[dict[str, Any]]
    backgrounds: list[dict[str, Any]]
    music: list[dict[str, Any]]
    asset_urls: dict[str, str] = Field(description="Signed download URLs of the assets the project names")
    analysis: dict[str, Any] | None = Field(description="The breakdown of the last analysis (POST .../analyze)")


class ProjectsPublic(BaseModel):
    data: list[ProjectSummary]
    next_cursor: str | None


class SharePublic(BaseModel):
    id: str
    project_id: str
    email: str | None
    user_id: str | None
    created_at: str | None


class SharesPublic(BaseModel):
    data: list[SharePublic]


class VoicePublic(BaseModel):
    id: str
    label: str
    language: str
    description: str


class Range(BaseModel):
    min: float
    max: float
    default: float


class VoicesPublic(BaseModel):
    data: list[VoicePublic]
    default: str
    rate: Range
    pitch: Range


class MoodsPublic(BaseModel):
    data: list[str]


# --- conversion -----------------------------------------------------------------------------------------------------
def _summary_fields(a: Access) -> dict[str, Any]:
    p = a.project
    return {"id": p.id, "owner_id": p.owner_id, "role": a.role, "title": p.title, "description": p.description,
            "script_format": p.script_format, "script_bytes": p.script_bytes,
            "counts": Counts(characters=len(p.characters), backgrounds=len(p.backgrounds), music=len(p.music)),
            "revision": p.revision, "analyzed_at": iso(p.analyzed_at), "analysis_stale": p.analysis_stale,
            "last_render_job_id": p.last_render_job_id if a.role == "owner" else None,
            "created_at": iso(p.created_at), "updated_at": iso(p.updated_at)}


def _detail(c: Any, a: Access) -> ProjectDetail:
    p = a.project
    analysis = dict(p.breakdown) if p.breakdown is not None else None
    if analysis is not None and isinstance(analysis.get("analyzed_at"), int | float):
        analysis["analyzed_at"] = iso(analysis["analyzed_at"])
    return ProjectDetail(**_summary_fields(a), script=p.script or "", characters=p.characters,
                         backgrounds=p.backgrounds, music=p.music, asset_urls=c.app("film").asset_urls(p),
                         analysis=analysis)


def _share(s: Share) -> SharePublic:
    # A share made by address shows the address only: whether it has an account is not told.
    return SharePublic(id=s.id, project_id=s.project_id, email=s.email, user_id=None if s.email else s.user_id,
                       created_at=iso(s.created_at))


def _as_owner(project: Project) -> Access:
    """A project the caller just changed (only its owner may)."""
    return Access(project, OWNER)


# --- catalogue ------------------------------------------------------------------------------------------------------
@router.get("/film/voices", response_model=VoicesPublic)
def film_voices(p: CurrentUser, c: Container) -> dict[str, Any]:
    """The voices a character may speak with, and the ranges of a voice's rate and pitch."""
    return dict(c.app("film").voices())


@router.get("/film/moods", response_model=MoodsPublic)
def film_moods(p: CurrentUser, c: Container) -> dict[str, Any]:
    """The moods of scenes and of generated scores."""
    return {"data": list(MOODS)}


# --- projects -------------------------------------------------------------------------------------------------------
@router.post("/projects", status_code=201, response_model=ProjectDetail)
def create_project(body: ProjectCreate, p: CurrentUser, c: Container) -> ProjectDetail:
    """A new project: title, script (with its format), characters, backgrounds and music. Every asset named
    must be yours: images for portraits and backgrounds, audio for music."""
    project = c.app("film").create(p, body.model_dump(exclude_unset=True))
    return _detail(c, _as_owner(project))


@router.get("/projects", response_model=ProjectsPublic)
def list_projects(p: CurrentUser, c: Container, scope: Literal["all", "owned", "shared"] = "all",
                  limit: Annotated[int | None, Query(ge=1, le=200)] = None,
                  cursor: Annotated[str | None, Query(max_length=200)] = None) -> ProjectsPublic:
    """Your projects and those shared with you (`scope`), newest first; pass `next_cursor` on for more."""
    page = c.app("film").projects(p, scope=scope, limit=limit, cursor=cursor)
    return ProjectsPublic(data=[ProjectSummary(**_summary_fields(a)) for a in page.items],
                          next_cursor=page.next_cursor)


@router.get("/projects/{project_id}", response_model=ProjectDetail)
def get_project(project_id: str, p: CurrentUser, c: Container) -> ProjectDetail:
    """The project with its script, assets (with download URLs) and last analysis."""
    return _detail(c, c.app("film").get(p, project_id))


@router.patch("/projects/{project_id}", response_model=ProjectDetail, responses=problems(403))
def update_project(project_id: str, body: ProjectUpdate, p: CurrentUser, c: Container) -> ProjectDetail:
    """Change fields; a list given (characters, backgrounds, music) replaces the project's. Changing the
    script, its format, the characters or the backgrounds makes the stored analysis stale (`analysis_stale`)."""
    project = c.app("film").update(p, project_id, body.model_dump(exclude_unset=True))
    return _detail(c, _as_owner(project))


@router.delete("/projects/{project_id}", status_code=204, responses=problems(403))
def delete_project(project_id: str, p: CurrentUser, c: Container) -> Response:
    """Delete the project and its shares (the assets it names are kept)."""
    c.app("film").delete(p, project_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/analyze", response_model=ProjectDetail, responses=problems(403))
def analyze_project(project_id: str, p: CurrentUser, c: Container) -> ProjectDetail:
    """Break the script down into scenes, characters, dialogue and action with estimated durations, and
    store it on the project (`analysis`). With a language model configured, scene descriptions and image
    prompts are written by it (`analysis.enrichment` says whether it was used, and why not)."""
    project = c.app("film").analyze(p, project_id)
    return _detail(c, _as_owner(project))


# --- shares ---------------------------------------------------------------------------------------------------------
@router.post("/projects/{project_id}/shares", status_code=201, response_model=SharePublic,
             responses={**problems(403, 409), 200: {"description": "Already shared with them: the existing share",
                                                    "model": SharePublic}})
def share_project(project_id: str, body: ShareCreate, p: CurrentUser, c: Container, response: Response
                  ) -> SharePublic:
    """Share the project read-only with another account, by its user id or by an e-mail address (any account
    with that address, now or once registered, can read it). 200 with the existing share when it is shared
    with them already."""
    share, created = c.app("film").share(p, project_id, email=body.email, user_id=body.user_id)
    if not created:
        response.status_code = 200
    return _share(share)


@router.get("/projects/{project_id}/shares", response_model=SharesPublic, responses=problems(403))
def list_shares(project_id: str, p: CurrentUser, c: Container) -> SharesPublic:
    """Who the project is shared with (its owner's to see)."""
    return SharesPublic(data=[_share(s) for s in c.app("film").shares(p, project_id)])


@router.delete("/projects/{project_id}/shares/{share_id}", status_code=204, responses=problems(403))
def delete_share(project_id: str, share_id: str, p: CurrentUser, c: Container) -> Response:
    """Stop sharing (the owner), or leave a project shared with you (your own share)."""
    c.app("film").unshare(p, project_id, share_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/render", status_code=202, response_model=JobPublic,
             responses=problems(402, 403, 404))
def render_project(project_id: str, p: CurrentUser, c: Container, response: Response,
                   body: RenderOptions | None = None) -> JobPublic:
    """Queue `film.render` for the project (the same as `POST /v1/jobs` with that kind): voices, pictures,
    lip-synced faces, music, effects and subtitles composed into one MP4. Priced per rendered second (the estimate is
    reserved, the rest refunded)."""
    data: dict[str, Any] = {"project_id": project_id, **(body or RenderOptions()).model_dump(exclude_none=True)}
    job, _ = c.jobs.submit(p, RENDER_KIND, data)
    c.app("film").set_last_render(p.user_id, project_id, job.id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return convert.job(job)
