"""`reelforge roto FILE`: rotoscope a video from a script.

Uploads the file (multipart when the server says it is large), makes a session, sends the prompts, queues
`video.rotoscope`, follows its progress and downloads the chosen exports into ``-o OUT``::

    reelforge roto clip.mp4 --point 320,180 --negative 40,30 --box 200,80,460,400@12 \\
        --export alpha_prores --export greenscreen -o out/

Prompts: ``--point X,Y[@FRAME]`` (part of the object), ``--negative X,Y[@FRAME]`` (not part of it) and
``--box X0,Y0,X1,Y1[@FRAME]`` (at most one per object and frame); pixels of the frame as a player shows it, frame
0 unless ``@FRAME`` says otherwise. They belong to object ``--object N`` (default 1), or to the object a prefix
names: ``--point 2:100,80`` is a point of object 2. The prompts of one object on one frame go to the server
together. Bad arguments exit 2 with a message before anything is uploaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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

EXPORT_KINDS = ("coco", "alpha_prores", "alpha_webm", "png_zip", "greenscreen")
DEFAULT_EXPORTS = ("alpha_prores", "coco")
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
               ".webm": "video/webm", ".avi": "video/x-msvideo", ".ts": "video/mp2t"}

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_SPEC = re.compile(rf"^(?:(?P<obj>\d+):)?(?P<nums>{_NUM}(?:,{_NUM})*)(?:@(?P<frame>\d+))?$")


class UsageError(ValueError):
    """A bad argument: its message is shown as is, with exit code 2."""


@dataclass
class FramePrompt:
    """Everything one object gets on one frame: its points (x, y, label) and at most one box."""

    object: int
    frame: int
    points: list[tuple[float, float, int]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None


def parse_spec(option: str, text: str, count: int, default_object: int) -> tuple[int, int, list[float]]:
    """``[OBJ:]N1,...,Ncount[@FRAME]`` as (object, frame, numbers); UsageError on anything else."""
    shape = ",".join(["X", "Y"] if count == 2 else ["X0", "Y0", "X1", "Y1"])
    m = _SPEC.match(text.strip())
    if m is None:
        raise UsageError(f"{option} expects [OBJECT:]{shape}[@FRAME], not {text!r}")
    nums = [float(v) for v in m.group("nums").split(",")]
    if len(nums) != count:
        raise UsageError(f"{option} expects {count} numbers ({shape}), not {len(nums)} in {text!r}")
    if not all(math.isfinite(v) for v in nums):
        raise UsageError(f"{option} {text!r}: coordinates must be finite numbers")
    obj = int(m.group("obj")) if m.group("obj") else default_object
    if obj < 1:
        raise UsageError(f"{option} {text!r}: objects are numbered from 1")
    return obj, int(m.group("frame") or 0), nums


def collect_prompts(points: list[str], negatives: list[str], boxes: list[str],
                    default_object: int) -> list[FramePrompt]:
    """The prompts, one per (object, frame), ordered by frame then object; UsageError for bad arguments."""
    if default_object < 1:
        raise UsageError("--object is numbered from 1")
    merged: dict[tuple[int, int], FramePrompt] = {}

    def slot(obj: int, frame: int) -> FramePrompt:
        return merged.setdefault((obj, frame), FramePrompt(obj, frame))

    for option, specs, label in (("--point", points, 1), ("--negative", negatives, 0)):
        for text in specs:
            obj, frame, (x, y) = parse_spec(option, text, 2, default_object)
            if x < 0 or y < 0:
                raise UsageError(f"{option} {text!r}: coordinates are pixels from the top-left corner (0 or more)")
            slot(obj, frame).points.append((x, y, label))
    for text in boxes:
        obj, frame, (x0, y0, x1, y1) = parse_spec("--box", text, 4, default_object)
        if x1 <= x0 or y1 <= y0:
            raise UsageError(f"--box {text!r}: needs X0 < X1 and Y0 < Y1 (left, top, right, bottom)")
        if x0 < 0 or y0 < 0:
            raise UsageError(f"--box {text!r}: coordinates are pixels from the top-left corner (0 or more)")
        p = slot(obj, frame)
        if p.box is not None:
            raise UsageError(f"--box: object {obj} has two boxes on frame {frame}; give one")
        p.box = (x0, y0, x1, y1)
    if not merged:
        raise UsageError("give at least one --point or --box (where the object is)")
    for obj in sorted({o for o, _ in merged}):
        if not any(p.box is not None or any(lab == 1 for *_, lab in p.points)
                   for (o, _), p in merged.items() if o == obj):
            raise UsageError(f"object {obj} has only negative points: add a --point or a --box inside it")
    return [merged[k] for k in sorted(merged, key=lambda k: (k[1], k[0]))]


def check_exports(kinds: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(kinds or DEFAULT_EXPORTS))
    for k in chosen:
        if k not in EXPORT_KINDS:
            raise UsageError(f"--export {k!r} is not an export; choose from {', '.join(EXPORT_KINDS)}")
    return chosen


def parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)[:-](\d+)", text.strip())
    if m is None or int(m.group(1)) > int(m.group(2)):
        raise UsageError(f"--range expects START:END (frames, inclusive, START <= END), not {text!r}")
    return int(m.group(1)), int(m.group(2))


def check_against(prompts: list[FramePrompt], width: int, height: int, frames: int,
                  span: tuple[int, int] | None) -> None:
    """Frames and coordinates against the video the session describes (as shown)."""
    if span is not None and span[1] >= frames:
        raise UsageError(f"--range {span[0]}:{span[1]} reaches past the video's last frame ({frames - 1})")
    for p in prompts:
        if p.frame >= frames:
            raise UsageError(f"frame {p.frame} is past the video's last frame ({frames - 1})")
        for x, y, _ in p.points:
            if x >= width or y >= height:
                raise UsageError(f"point {x:g},{y:g} on frame {p.frame} is outside the {width}x{height} video")
        if p.box is not None and (p.box[2] > width or p.box[3] > height):
            raise UsageError(f"box {','.join(f'{v:g}' for v in p.box)} is outside the {width}x{height} video")


def roto(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A video")],
         point: Annotated[list[str] | None, typer.Option("--point", "-p", help="X,Y (or OBJ:X,Y@FRAME): part of "
                                                                             "the object (repeat)")] = None,
         negative: Annotated[list[str] | None, typer.Option(
             "--negative", "-n", help="X,Y (or OBJ:X,Y@FRAME): not part of the object (repeat)")] = None,
         box: Annotated[list[str] | None, typer.Option("--box", "-b", help="X0,Y0,X1,Y1 (or OBJ:...@FRAME): "
                                                                         "around the object")] = None,
         object_: Annotated[int, typer.Option("--object", help="The object the prompts without OBJ: belong to")]
         = 1,
         export: Annotated[list[str] | None, typer.Option("--export", "-e", help="coco, alpha_prores, alpha_webm, "
                                                                               "png_zip, greenscreen (repeat; "
                                                                               "default alpha_prores and coco)")]
         = None,
         per_object: Annotated[bool, typer.Option("--per-object", help="One file per object too")] = False,
         frames: Annotated[str | None, typer.Option("--range", help="START:END frames to propagate over "
                                                                     "(inclusive; default all)")] = None,
         output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the exports (made if missing)")]
         = Path("."),
         name: Annotated[str | None, typer.Option("--name", help="The session's name")] = None,
         timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds (exit 6)")]
         = None,
         url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Rotoscope a video: upload, prompt, propagate through every frame, download the exports."""
    try:
        prompts = collect_prompts(point or [], negative or [], box or [], object_)
        kinds = check_exports(export)
        span = parse_range(frames)
    except UsageError as exc:
        _die(f"error: {exc}", EXIT_USAGE)
        return
    ctype = VIDEO_TYPES.get(file.suffix.lower())
    if ctype is None:
        _die(f"error: {file.name} is not a video this command knows ({', '.join(sorted(VIDEO_TYPES))})", EXIT_USAGE)
        return
    if output.exists() and not output.is_dir():
        _die(f"error: -o {output} is a file; give a folder for the exports", EXIT_USAGE)
    with handled(as_json), connect(url) as c:
        with BytesProgressView(f"upload {file.name}", file.stat().st_size) as up:
            asset = c.assets.upload(file, ctype, on_progress=up)
        session = c.roto.create_session(asset.id, name=name or file.name)
        try:
            check_against(prompts, session.width, session.height, session.frame_count, span)
        except UsageError as exc:
            c.roto.delete_session(session.id)
            _die(f"error: {exc}", EXIT_USAGE)
        ids: dict[int, int] = {}  # object number here -> the session's object id
        answers: list[dict[str, Any]] = []
        for p in prompts:
            answer = c.roto.prompt(session.id, p.frame, p.points, object_id=ids.get(p.object), box=p.box)
            if answer.prompt is not None:
                ids.setdefault(p.object, answer.prompt.object_id)
            area = next((m.area for m in answer.masks if m.object_id == ids.get(p.object)), 0)
            answers.append({"object": p.object, "object_id": ids.get(p.object), "frame": p.frame, "area": area})
            if not as_json:
                typer.echo(f"object {p.object} frame {p.frame}: mask of {area} pixels", err=True)
        handle = c.roto.propagate(session.id, range=span, exports=kinds, per_object=per_object)
        with JobProgressView(handle.id) as view:
            job = handle.wait(timeout, on_progress=view)
        if not job.ok:
            _finish(job, as_json)  # exits 1
            return
        output.mkdir(parents=True, exist_ok=True)
        saved: list[dict[str, Any]] = []
        for out in (job.outputs or {}).get("exports") or ():
            info = c.assets.get(str(out["asset_id"]))
            with BytesProgressView(f"download {info.filename or info.id}", info.size) as down:
                path = c.assets.download(info.id, output, on_progress=down)
            saved.append({**_export_fields(out), "path": str(path)})
    if as_json:
        _print_json({"session_id": session.id, "asset_id": asset.id, "job_id": job.id, "prompts": answers,
                     "objects": ids, "exports": saved})
    else:
        typer.echo(f"session {session.id}: {session.frame_count} frames, {len(ids)} object(s), job {job.id}")
        for s in saved:
            who = "all objects" if s.get("object_id") is None else f"object {s['object_id']}"
            typer.echo(f"{s['kind']:<13} {who:<12} {s['path']}")


def _export_fields(out: Mapping[str, Any]) -> dict[str, Any]:
    return {k: out.get(k) for k in ("kind", "object_id", "asset_id", "size", "content_type")}


def register(app: typer.Typer, groups: Mapping[str, Any]) -> None:
    """Adds `reelforge roto` to the CLI."""
    app.command("roto")(roto)
