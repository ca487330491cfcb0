"""`reelforge upscale FILE`: upload, submit, follow the progress, download the result."""

from __future__ import annotations

from collections.abc import Mapping
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

UPSCALE_CONTENT_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
                         ".mkv": "video/x-matroska", ".webm": "video/webm", ".avi": "video/x-msvideo",
                         ".ts": "video/mp2t", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                         ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}


# What an output name says: the container (video) or the format (image) to ask for.
VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "mkv"}
IMAGE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def _named_output(output: Path | None) -> str | None:
    """The suffix of `-o` when it names a file (not an existing folder)."""
    if output is None or output.is_dir() or not output.suffix:
        return None
    return output.suffix.lower()


def _from_name(output: Path | None, asked: str | None, known: Mapping[str, str], what: str) -> str | None:
    """The container or format to ask for: the one given, else what the output's name says; a name that
    disagrees with the option, or that no container/format of the job matches, is a usage error."""
    suffix = _named_output(output)
    if suffix is None:
        return asked
    implied = known.get(suffix)
    if implied is None:
        choices = ", ".join(sorted(known))
        _die(f"error: cannot write {what} to {output} ({suffix}); name it {choices}, or give a folder", EXIT_USAGE)
    if asked is not None and asked != implied:
        _die(f"error: --{'container' if what == 'a video' else 'format'} {asked} but the output is named {output}",
             EXIT_USAGE)
    return implied


def upscale(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                                 help="A video (video.upscale) or an image (image.upscale)")],
            model: Annotated[str, typer.Option("--model", "-m", help="An image.upscale model (reelforge models "
                                                                     "list --task image.upscale)")]
            = "realesr-animevideov3",
            scale: Annotated[int, typer.Option("--scale", min=2, max=4)] = 2,
            output: Annotated[Path | None, typer.Option("--output", "-o", help="File or directory (default: here)")]
            = None,
            container: Annotated[str | None, typer.Option(help="Video: mp4 or mkv (default: as the output's name "
                                                               "says, else the source's own kind)")] = None,
            codec: Annotated[str | None, typer.Option("--codec", help="Video: h264 or h265")] = None,
            crf: Annotated[int | None, typer.Option(min=0, max=51, help="Video: quality (lower is better)")] = None,
            preset: Annotated[str | None, typer.Option(help="Video: x264/x265 preset")] = None,
            chunk_seconds: Annotated[float | None, typer.Option("--chunk-seconds")] = None,
            denoise: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
            image_format: Annotated[str | None, typer.Option("--format", help="Image: png, jpeg or webp")] = None,
            content_type: Annotated[str | None, typer.Option("--content-type", help="Default: from the name")]
            = None,
            timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds (exit 6)")]
            = None,
            url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Upscale a video or an image: upload, submit, follow the progress, download the result."""
    import mimetypes

    ctype = (content_type or UPSCALE_CONTENT_TYPES.get(file.suffix.lower())
             or mimetypes.guess_type(file.name)[0] or "application/octet-stream")
    if ctype.startswith("video/"):
        kind = "video.upscale"
        # `-o out.mkv` asks for Matroska: the bytes must be what the name says. Without either, the server keeps
        # the source's own kind.
        container = _from_name(output, container, VIDEO_SUFFIXES, "a video")
        body: dict[str, Any] = {"model": model, "scale": scale}
        out_opts = {k: v for k, v in (("container", container), ("video_codec", codec), ("crf", crf),
                                      ("preset", preset)) if v is not None}
        if out_opts:
            body["output"] = out_opts
        if chunk_seconds is not None:
            body["chunk_seconds"] = chunk_seconds
    elif ctype.startswith("image/"):
        kind = "image.upscale"
        image_format = _from_name(output, image_format, IMAGE_SUFFIXES, "an image")
        body = {"model": model, "scale": scale}
        if image_format is not None:
            body["format"] = image_format
    else:
        _die(f"error: {file.name} is {ctype}; give a video or an image (or --content-type)", EXIT_USAGE)
        return
    if denoise is not None:
        body["denoise"] = denoise
    size = file.stat().st_size
    with handled(as_json), connect(url) as c:
        with BytesProgressView(f"upload {file.name}", size) as up:
            asset = c.assets.upload(file, ctype, on_progress=up)
        body["asset_id"] = asset.id
        handle = c.jobs.submit(kind, body)
        with JobProgressView(handle.id) as view:
            job = handle.wait(timeout, on_progress=view)
        if not job.ok:
            _finish(job, as_json)  # exits 1
            return
        result_id = str((job.outputs or {}).get("asset_id"))
        result = c.assets.get(result_id)
        with BytesProgressView(f"download {result.filename or result.id}", result.size) as down:
            path = c.assets.download(result_id, output, on_progress=down)
    if as_json:
        _print_json({"path": str(path), "job": job.to_dict(), "source_asset_id": asset.id})
    else:
        out = job.outputs or {}
        typer.echo(f"{kind} {job.id}: {out.get('width')}x{out.get('height')} -> {path}")


def register(app: typer.Typer, groups: Mapping[str, Any]) -> None:
    """Adds `reelforge upscale` to the CLI."""
    app.command()(upscale)
