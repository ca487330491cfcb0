"""`reelforge videos ...` and `reelforge mobs ...`: video understanding from the command line.

    reelforge videos submit clip.mp4 --caption "my take #coffeeart"   # upload, then follow the analysis
    reelforge videos show VIDEO_ID
    reelforge videos feed --order best --limit 10
    reelforge videos similar VIDEO_ID -k 5 --min-similarity 0.5
    reelforge mobs list
    reelforge mobs show MOB_ID

Exit codes and `--json` are the CLI's (cli/remote.py): 0 done, 1 the analysis failed, 2 bad arguments or a
refused request, 3 not found, 4 not signed in or not allowed, 5 server unreachable, 6 timed out. A rejected
video is an analysis that finished (exit 0); its status and reasons say why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reelforge.cli.remote import (
    EXIT_FAILED,
    EXIT_USAGE,
    BytesProgressView,
    JobProgressView,
    JsonOpt,
    UrlOpt,
    _die,
    _print_json,
    connect,
    handled,
)

videos_app = typer.Typer(help="Video understanding: submit videos, read them, the feed, similar videos.",
                         no_args_is_help=True)
mobs_app = typer.Typer(help="Mobs: groups of similar videos.", no_args_is_help=True)

VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska"}


def _video_line(v: Any) -> str:
    score = "-" if v.score is None else f"{v.score:.2f}"
    return f"{v.id}  {v.status:<10} score {score:<5} mob {v.mob_id or '-':<32}  {(v.caption or '')[:60]}"


def _show_video(v: Any) -> None:
    rows = [("id", v.id), ("status", v.status), ("visibility", v.visibility), ("caption", v.caption or ""),
            ("score", "-" if v.score is None else f"{v.score:.4f}"),
            ("mob", f"{v.mob['name']} ({v.mob['id']})" if v.mob else "-"), ("job", v.job_id or "-")]
    if v.error:
        rows.append(("error", f"{v.error.get('code')}: {v.error.get('message') or ''}"))
    for name, value in rows:
        typer.echo(f"{name:<10} {value}")
    for reason in (v.scores or {}).get("reasons") or []:
        typer.echo(f"  {reason}")


@videos_app.command("submit")
def submit(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A video file")],
           caption: Annotated[str, typer.Option(help="The caption (hashtags and mentions count)")] = "",
           private: Annotated[bool, typer.Option("--private", help="Only you see it")] = False,
           wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the analysis to its end")] = True,
           timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds (exit 6)")]
           = None,
           url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Upload a video and follow its analysis; prints its status, score, mob and the score's reasons."""
    content_type = VIDEO_TYPES.get(file.suffix.lower())
    if content_type is None:
        _die(f"error: {file.name}: not a video file type this server takes ({', '.join(sorted(VIDEO_TYPES))})",
             EXIT_USAGE)
    if len(caption) > 2200:
        _die("error: --caption is at most 2200 characters", EXIT_USAGE)
    size = file.stat().st_size
    with handled(as_json), connect(url) as c:
        with BytesProgressView(f"upload {file.name}", size) as view:
            done = c.videos.upload(file, caption=caption, content_type=str(content_type),
                                   visibility="private" if private else "public", on_progress=view)
        video_id = done.video.id
        if not wait:
            if as_json:
                _print_json({"video": done.video.to_dict(), "job_id": done.job_id})
            else:
                typer.echo(f"{video_id} (analysis job {done.job_id})")
            return
        with JobProgressView(done.job_id) as jv:
            job = c.jobs.handle(done.job_id).wait(timeout, on_progress=jv)
        v = c.videos.get(video_id)
    if as_json:
        _print_json({"video": v.to_dict(), "job_id": done.job_id, "job_status": job.status})
    else:
        _show_video(v)
    if not job.ok:
        raise typer.Exit(EXIT_FAILED)


@videos_app.command("show")
def show(video_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """One video: status, score with its reasons, mob."""
    with handled(as_json), connect(url) as c:
        v = c.videos.get(video_id)
    if as_json:
        _print_json(v.to_dict())
    else:
        _show_video(v)


@videos_app.command("feed")
def feed(order: Annotated[str, typer.Option(help="new or best")] = "new",
         mob: Annotated[str | None, typer.Option(help="Only this mob's videos")] = None,
         limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
         user: Annotated[str | None, typer.Option(help="A creator's videos instead (a user id; yours: 'me')")]
         = None,
         url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Validated public videos, newest or best first; or one creator's (`--user`)."""
    if order not in ("new", "best"):
        _die(f"error: --order must be new or best, not {order!r}", EXIT_USAGE)
    with handled(as_json), connect(url) as c:
        if user is not None:
            page = c.videos.of_user(None if user == "me" else user, limit=limit)
        else:
            page = c.videos.feed(order=order, mob_id=mob, limit=limit)
    if as_json:
        _print_json(page.to_dict())
        return
    for v in page.data:
        typer.echo(_video_line(v))
    if not page.data:
        typer.echo("no videos", err=True)


@videos_app.command("similar")
def similar(video_id: str, k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many")] = 10,
            min_similarity: Annotated[float | None, typer.Option("--min-similarity", min=-1.0, max=1.0,
                                                                 help="Leave out less similar videos "
                                                                      "(default: the server's)")] = None,
            url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """The nearest videos by content."""
    with handled(as_json), connect(url) as c:
        res = c.videos.similar(video_id, k=k, min_similarity=min_similarity)
    if as_json:
        _print_json(res.to_dict())
        return
    for hit in res.data:
        typer.echo(f"{hit.score:.3f}  {_video_line(hit.video)}")
    if res.fewer_than_k:
        typer.echo(f"{len(res.data)} of {k} at similarity {res.min_similarity:.2f} or more", err=True)


@mobs_app.command("list")
def mobs_list(url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Active mobs, largest first."""
    with handled(as_json), connect(url) as c:
        mobs = c.mobs.list()
    if as_json:
        _print_json([m.to_dict() for m in mobs])
        return
    for m in mobs:
        typer.echo(f"{m.id}  {m.count:>4}  {m.name}")
    if not mobs:
        typer.echo("no mobs", err=True)


@mobs_app.command("show")
def mobs_show(mob_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """One mob: name, top terms, its videos and its history."""
    with handled(as_json), connect(url) as c:
        m = c.mobs.get(mob_id)
    if as_json:
        _print_json(m.to_dict())
        return
    typer.echo(f"id        {m.id}\nname      {m.name}\nstatus    {m.status}"
               + (f" (into {m.merged_into})" if m.merged_into else "")
               + f"\nvideos    {m.count}\nterms     {', '.join(m.top_terms)}")
    for v in m.videos or []:
        typer.echo(f"  {_video_line(v)}")
    for e in m.events or []:
        typer.echo(f"  {e.get('ts') or ''}  {e.get('kind')}  {e.get('details') or {}}")


def register(app: typer.Typer, groups: Any) -> None:
    """Adds `reelforge videos ...` and `reelforge mobs ...` to the CLI."""
    app.add_typer(videos_app, name="videos")
    app.add_typer(mobs_app, name="mobs")
