"""`reelforge film render SCRIPT`: a script file to a finished film.

Makes a project of the script (Fountain or prose: the server tells them apart; the file's name is its title),
queues `film.render`, follows its progress and downloads the MP4 to ``-o`` (the subtitles go next to it, as
``.srt`` and ``.vtt``)::

    reelforge film render storm.fountain -o storm.mp4
    reelforge film render story.txt --aspect 9:16 --subtitles burn -o short.mp4

Speakers the script names get distinct voices; portraits, backgrounds, music and chosen voices are set on the
project (console, API, `--project`) and used by the next render. Bad arguments exit 2 before anything is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reelforge.cli.remote import (
    EXIT_USAGE,
    BytesProgressView,
    JobProgressView,
    JsonOpt,
    UrlOpt,
    _die,
    _finish,
    _print_json,
    connect,
    handled,
)

ASPECTS = ("16:9", "9:16")
SUBTITLES = ("soft", "burn", "none")
MAX_SCRIPT_BYTES = 5_000_000

film_app = typer.Typer(help="Film studio: scripts to films.", no_args_is_help=True)


@film_app.command("render")
def render(script: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                                  help="A script: Fountain (.fountain) or prose (.txt, .md)")],
           output: Annotated[Path, typer.Option("--output", "-o", help="Where the MP4 goes")] = Path("film.mp4"),
           aspect: Annotated[str, typer.Option(help="16:9 (landscape) or 9:16 (portrait)")] = "16:9",
           height: Annotated[int, typer.Option(help="The short side in pixels (144 to 1080)")] = 720,
           subtitles: Annotated[str, typer.Option(help="soft (a track), burn (in the picture) or none")] = "soft",
           language: Annotated[list[str] | None, typer.Option("--language", "-l", help="Subtitles in another "
                                                                                     "language too (repeat)")] = None,
           no_music: Annotated[bool, typer.Option("--no-music", help="No score under the scenes")] = False,
           title: Annotated[str | None, typer.Option(help="The project's title (default: the file's name)")] = None,
           project: Annotated[str | None, typer.Option(help="Render into this project of yours instead (its "
                                                            "script is replaced by the file's)")] = None,
           timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds (exit 6)")]
           = None,
           url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Render a script into a film: voices, pictures, lip-synced faces, music, subtitles, one MP4."""
    if aspect not in ASPECTS:
        _die(f"error: --aspect must be one of {', '.join(ASPECTS)}, not {aspect!r}", EXIT_USAGE)
    if subtitles not in SUBTITLES:
        _die(f"error: --subtitles must be one of {', '.join(SUBTITLES)}, not {subtitles!r}", EXIT_USAGE)
    if not 144 <= height <= 1080:
        _die(f"error: --height must be between 144 and 1080, not {height}", EXIT_USAGE)
    if output.exists() and output.is_dir():
        _die(f"error: -o {output} is a folder; give the MP4's file name", EXIT_USAGE)
    raw = script.read_bytes()
    if len(raw) > MAX_SCRIPT_BYTES:
        _die(f"error: {script.name} is {len(raw)} bytes; scripts are at most {MAX_SCRIPT_BYTES} bytes", EXIT_USAGE)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        _die(f"error: {script.name} is not UTF-8 text", EXIT_USAGE)
        return
    if not text.strip():
        _die(f"error: {script.name} is empty", EXIT_USAGE)
    fmt = "fountain" if script.suffix.lower() in (".fountain", ".spmd") else "auto"
    with handled(as_json), connect(url) as c:
        if project:
            proj = c.film.update_project(project, script=text, script_format=fmt)
        else:
            proj = c.film.create_project(title or script.stem[:200], script=text, script_format=fmt)
        handle = c.film.render(proj.id, aspect=aspect, height=height, subtitles=subtitles,
                               languages=language or (), music=not no_music)
        with JobProgressView(handle.id) as view:
            job = handle.wait(timeout, on_progress=view)
        if not job.ok:
            _finish(job, as_json)  # exits 1
            return
        out: dict[str, Any] = job.outputs or {}
        output.parent.mkdir(parents=True, exist_ok=True)
        info = c.assets.get(str(out["video_asset_id"]))
        with BytesProgressView(f"download {output.name}", info.size) as down:
            c.assets.download(info.id, output, on_progress=down)
        files = {"video": str(output)}
        for lang, entry in (out.get("subtitles") or {}).items():
            for fmt_ in ("srt", "vtt"):
                asset_id = entry.get(f"{fmt_}_asset_id")
                if asset_id:
                    target = output.with_suffix(f".{lang}.{fmt_}")
                    c.assets.download(str(asset_id), target)
                    files[f"{lang}.{fmt_}"] = str(target)
    if as_json:
        _print_json({"project_id": proj.id, "job_id": job.id, "files": files,
                     **{k: out.get(k) for k in ("duration_s", "size", "subtitles_mode", "loudness_lufs",
                                                "translations", "notes")}})
    else:
        typer.echo(f"project {proj.id}, job {job.id}: {out.get('duration_s')} s at "
                   f"{'x'.join(map(str, out.get('size') or []))}, {len(out.get('scenes') or [])} scene(s)")
        for note in out.get("notes") or ():
            typer.echo(f"note: {note}")
        for kind, path in files.items():
            typer.echo(f"{kind:<8} {path}")


def register(app: typer.Typer, groups: Any) -> None:
    """Adds `reelforge film ...` to the CLI."""
    app.add_typer(film_app, name="film")
