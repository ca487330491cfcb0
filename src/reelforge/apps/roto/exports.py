"""Rotoscoping exports: the masks of a video written as files editors and tools read.

`write_exports` takes the source video, its `FrameSource`, the masks as an iterator of
``(frame_index, {object_id: bool mask})`` in frame order, the objects and the kinds asked for, and writes, for all
objects together and per object:

- ``alpha_prores``: the object cut out (the source's RGB, the mask as alpha) as ProRes 4444 (``prores_ks``
  profile 4444, ``yuva444p10le``) in QuickTime (.mov);
- ``alpha_webm``: the same cut-out as VP9 with alpha (``libvpx-vp9``, ``yuva420p``) in WebM, checked after writing
  by decoding it with the libvpx-vp9 decoder and reading the alpha back;
- ``png_zip``: the cut-out as one RGBA PNG per frame, zipped, with ``frames.json`` (each frame's time);
- ``greenscreen``: the object over chroma green, H.264 (yuv420p) in MP4, with the source's audio streams copied
  (re-encoded to AAC where MP4 cannot hold them);
- ``coco``: COCO-style JSON, one image per frame and one annotation per object present in it, masks as
  compressed COCO RLE.

Every video export has the source's frame count and each frame's own presentation time and duration (the
source's time base in MOV and MP4, so variable frame rate survives exactly; WebM stores milliseconds). The
source's display rotation is applied to the pixels and no rotation is written (docs/decisions.md): mattes,
previews, PNGs and RLE coordinates are all in the orientation a player shows the original in, which is how an
editor shows the original too, so a matte laid over the original lines up.

Frames the masks do not cover (outside a job's in and out markers) are exported with empty masks (transparent), so
an export always spans the whole source.

Streaming: one pass over the frames and masks, writing every file at once; only the current frame, its masks
and each encoder's own look-ahead are held, never the video.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from reelforge import errors
from reelforge.apps.roto.frames import FrameInfo, FrameSource

log = logging.getLogger("reelforge.roto")

MATTE_MOV = "alpha_prores"
MATTE_WEBM = "alpha_webm"
PNG_ZIP = "png_zip"
PREVIEW_MP4 = "greenscreen"
COCO_JSON = "coco"
KINDS: dict[str, str] = {
    MATTE_MOV: "Alpha matte, ProRes 4444 (MOV)",
    MATTE_WEBM: "Alpha matte, VP9 with alpha (WebM)",
    PNG_ZIP: "PNG sequence with alpha (ZIP)",
    PREVIEW_MP4: "Green-screen preview with audio (MP4)",
    COCO_JSON: "COCO RLE masks per frame (JSON)",
}
CONTENT_TYPES = {MATTE_MOV: "video/quicktime", MATTE_WEBM: "video/webm", PNG_ZIP: "application/zip",
                 PREVIEW_MP4: "video/mp4", COCO_JSON: "application/json"}
SUFFIXES = {MATTE_MOV: ".mov", MATTE_WEBM: ".webm", PNG_ZIP: ".zip", PREVIEW_MP4: ".mp4", COCO_JSON: ".json"}
# Chroma-key green (the usual studio value).
GREEN = np.array([0, 177, 64], dtype=np.uint8)
# Audio codecs the MP4 muxer takes as they are; any other is re-encoded to AAC for the preview.
_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac", "mp2"}


class ExportError(errors.ReelforgeError):
    """An encoder or muxer failed, or a check of a written file did not hold."""

    status, code, title = 500, "media_error", "Media processing failed"


def color_for(object_id: int) -> str:
    """An object's colour ("#rrggbb"): the overlays' colour for its id (`masks.color_for`)."""
    from reelforge.apps.roto import masks

    r, g, b = masks.color_for(object_id)
    return f"#{r:02x}{g:02x}{b:02x}"


@dataclass(frozen=True)
class ExportObject:
    """One tracked object: its id in the masks, a name for file names and a colour ("#rrggbb"; default from the
    id)."""

    id: int
    name: str = ""
    color: str = ""

    def __post_init__(self) -> None:
        if not self.color:
            object.__setattr__(self, "color", color_for(self.id))

    @property
    def slug(self) -> str:
        s = re.sub(r"[^a-z0-9]+", "-", (self.name or "").lower()).strip("-")[:40]
        return f"object-{self.id}" + (f"-{s}" if s else "")


@dataclass(frozen=True)
class ExportFile:
    """One written file. ``object_id`` None is the combined export (all objects)."""

    kind: str
    object_id: int | None
    path: Path
    filename: str
    content_type: str
    size: int
    frames: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "object_id": self.object_id, "filename": self.filename,
                "content_type": self.content_type, "size": self.size, "frames": self.frames,
                "notes": list(self.notes)}


def check_kinds(kinds: Iterable[str]) -> list[str]:
    """The kinds asked for, each once, in the order given; refuses an unknown one (``export_unavailable``)
    and an empty list (``validation_error``)."""
    out: list[str] = []
    for k in kinds:
        if k not in KINDS:
            raise errors.ValidationFailed(f"Unknown export {k!r}; choose from {', '.join(KINDS)}",
                                          code="export_unavailable", allowed=list(KINDS))
        if k not in out:
            out.append(k)
    if not out:
        raise errors.ValidationFailed("Ask for at least one export", code="validation_error", allowed=list(KINDS))
    return out


# --------------------------------------------------------------------------------------------------- COCO RLE

def _bbox(mask: np.ndarray) -> list[int]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if not len(ys):
        return [0, 0, 0, 0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def rle_encoder() -> Callable[[np.ndarray], dict[str, Any]]:
    """The COCO RLE encoder exports use: the application's (`masks.encode`, pycocotools' format)."""
    from reelforge.apps.roto import masks

    return masks.encode


def rle_decoder() -> Callable[[Mapping[str, Any]], np.ndarray]:
    """The COCO RLE decoder for stored masks (`masks.decode`); a malformed RLE is refused as ``invalid_mask``."""
    from reelforge.apps.roto import masks

    def decode(rle: Mapping[str, Any]) -> np.ndarray:
        try:
            return masks.decode(rle)
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.ValidationFailed(f"A stored mask cannot be read ({exc})", code="invalid_mask") from exc

    return decode


# --------------------------------------------------------------------------------------------------- writers

class _Writer:
    """One output file fed frame by frame."""

    kind: str

    def __init__(self, path: Path, kind: str, object_id: int | None) -> None:
        self.path, self.kind, self.object_id = path, kind, object_id
        self.part = path.with_name(f".{path.name}.part")
        self.frames = 0
        self.notes: list[str] = []

    def write(self, index: int, rgb: np.ndarray, mask: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        os.replace(self.part, self.path)

    def abort(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.part.unlink()


class _VideoWriter(_Writer):
    """PyAV encoder at the source's timestamps; packets muxed with each frame's own duration."""

    def __init__(self, path: Path, kind: str, object_id: int | None, info: FrameInfo, *, fmt: str, codec: str,
                 pix_fmt: str, options: dict[str, str], even: bool = False) -> None:
        import av

        super().__init__(path, kind, object_id)
        self.info, self.pix_fmt = info, pix_fmt
        self.width = info.width + (info.width % 2 if even else 0)
        self.height = info.height + (info.height % 2 if even else 0)
        if (self.width, self.height) != (info.width, info.height):
            self.notes.append(f"padded to {self.width}x{self.height} (H.264 4:2:0 needs even sizes)")
        container: Any = av.open(str(self.part), "w", format=fmt)
        rate = Fraction(info.fps).limit_denominator(100000) if info.fps > 0 else None
        stream: Any = container.add_stream(codec, rate=rate)
        cc: Any = stream.codec_context
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, pix_fmt
        stream.time_base = info.time_base
        cc.time_base = info.time_base
        stream.options = dict(options)
        self.container, self.stream = container, stream
        with contextlib.suppress(Exception):  # BT.709, limited range: how frames are converted below
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1
        if info.sample_aspect_ratio:
            cc.sample_aspect_ratio = info.sample_aspect_ratio
        self.durations: dict[int, int] = {}
        self.pending: list[Any] = []

    def encode(self, index: int, picture: np.ndarray, fmt: str) -> None:
        import av
        from av.video.reformatter import Colorspace

        if picture.shape[0] != self.height or picture.shape[1] != self.width:
            pad = ((0, self.height - picture.shape[0]), (0, self.width - picture.shape[1]), (0, 0))
            picture = np.pad(picture, pad, mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format=fmt)
        frame = frame.reformat(format=self.pix_fmt, dst_colorspace=Colorspace.ITU709)
        pts = int(self.info.pts[index])
        frame.pts, frame.time_base = pts, self.info.time_base
        self.durations[pts] = int(self.info.durations[index])
        self._mux(self.stream.encode(frame))
        self.frames += 1

    def _mux(self, packets: Iterable[Any]) -> None:
        for pkt in packets:
            if pkt.pts is not None:
                # The packet's own frame duration, in the encoder's time base (the muxer rescales it).
                pkt.duration = self.durations.pop(int(pkt.pts), pkt.duration)
            self.container.mux(pkt)

    def finish(self) -> None:
        self._mux(self.stream.encode(None))
        self.container.close()
        super().finish()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()
        super().abort()


class _MatteMov(_VideoWriter):
    def __init__(self, path: Path, object_id: int | None, info: FrameInfo) -> None:
        super().__init__(path, MATTE_MOV, object_id, info, fmt="mov", codec="prores_ks", pix_fmt="yuva444p10le",
                         options={"profile": "4444", "vendor": "apl0", "alpha_bits": "16"})

    def write(self, index: int, rgb: np.ndarray, mask: np.ndarray) -> None:
        self.encode(index, _rgba(rgb, mask), "rgba")


class _MatteWebm(_VideoWriter):
    def __init__(self, path: Path, object_id: int | None, info: FrameInfo, threads: int) -> None:
        super().__init__(path, MATTE_WEBM, object_id, info, fmt="webm", codec="libvpx-vp9", pix_fmt="yuva420p",
                         options={"deadline": "good", "cpu-used": "5", "crf": "30", "b": "0", "row-mt": "1",
                                  "lag-in-frames": "8", "threads": str(threads)})
        self.probe_mask: np.ndarray | None = None
        self.probe_index = -1

    def write(self, index: int, rgb: np.ndarray, mask: np.ndarray) -> None:
        if self.probe_mask is None and mask.any() and not mask.all():
            self.probe_mask, self.probe_index = mask.copy(), self.frames
        self.encode(index, _rgba(rgb, mask), "rgba")

    def finish(self) -> None:
        super().finish()
        if self.probe_mask is not None:
            alpha = webm_alpha(self.path, self.probe_index)
            if alpha is None:
                raise ExportError("The WebM matte lost its alpha channel (the VP9 encoder wrote none)")
            agree = float(((alpha > 127) == self.probe_mask).mean())
            if agree < 0.97:
                raise ExportError(f"The WebM matte's alpha does not match the mask ({agree:.1%} of pixels agree)")


class _Preview(_VideoWriter):
    def __init__(self, path: Path, object_id: int | None, info: FrameInfo, threads: int, source: Path) -> None:
        super().__init__(path, PREVIEW_MP4, object_id, info, fmt="mp4", codec="libx264", pix_fmt="yuv420p",
                         options={"crf": "20", "preset": "veryfast", "threads": str(threads)}, even=True)
        self.source = source

    def write(self, index: int, rgb: np.ndarray, mask: np.ndarray) -> None:
        self.encode(index, np.where(mask[..., None], rgb, GREEN), "rgb24")

    def finish(self) -> None:
        if not self.info.audio_codecs:
            super().finish()
            return
        self._mux(self.stream.encode(None))
        self.container.close()
        muxed = self.path.with_name(f".{self.path.name}.audio.part")
        try:
            self.notes += _mux_audio(self.part, self.source, muxed, self.info.audio_codecs)
            os.replace(muxed, self.path)
        finally:
            for p in (self.part, muxed):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


class _PngZip(_Writer):
    def __init__(self, path: Path, object_id: int | None, info: FrameInfo) -> None:
        super().__init__(path, PNG_ZIP, object_id)
        self.info = info
        self.zip = zipfile.ZipFile(self.part, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.written: list[int] = []  # runs of frame indices written: [first, last, first, last, ...]

    def write(self, index: int, rgb: np.ndarray, mask: np.ndarray) -> None:
        from PIL import Image

        buf = BytesIO()
        Image.fromarray(_rgba(rgb, mask), "RGBA").save(buf, "PNG", compress_level=3)
        name = f"frame_{index:06d}.png"
        self.zip.writestr(name, buf.getvalue())
        if self.written and self.written[-1] == index - 1:
            self.written[-1] = index
        else:
            self.written += [index, index]
        self.frames += 1

    def finish(self) -> None:
        """frames.json, streamed into the archive from the frame index: each PNG's frame, time and duration."""
        info = self.info
        head = {"width": info.width, "height": info.height, "frame_count": info.frame_count,
                "time_base": f"{info.time_base.numerator}/{info.time_base.denominator}"}
        with self.zip.open("frames.json", "w", force_zip64=True) as out:
            out.write((json.dumps(head)[:-1] + ', "frames": [\n').encode())
            first = True
            for lo, hi in zip(self.written[::2], self.written[1::2], strict=True):
                for n in range(lo, hi + 1):
                    entry = {"file": f"frame_{n:06d}.png", "frame": n, "time_s": round(info.time_of(n), 6),
                             "duration_s": round(float(info.durations[n] * info.time_base), 6)}
                    out.write((("" if first else ",\n") + json.dumps(entry)).encode())
                    first = False
            out.write(b"\n]}\n")
        self.zip.close()
        super().finish()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.zip.close()
        super().abort()


class _CocoJson(_Writer):
    """Streams the JSON: header, categories and images first (from the frame index), annotations as they come."""

    def __init__(self, path: Path, object_id: int | None, info: FrameInfo, objects: Sequence[ExportObject],
                 source_name: str, encode: Callable[[np.ndarray], dict[str, Any]]) -> None:
        super().__init__(path, COCO_JSON, object_id)
        self.info, self.encode_rle = info, encode
        self.f = self.part.open("w", encoding="utf-8")
        tb = info.time_base
        head = {
            "info": {"description": "Rotoscoping masks", "source": source_name, "width": info.width,
                     "height": info.height, "frame_count": info.frame_count, "fps": round(info.fps, 6),
                     "time_base": f"{tb.numerator}/{tb.denominator}",
                     "orientation": "as displayed (source rotation applied)"},
            "categories": [{"id": o.id, "name": o.name or f"Object {o.id}", "color": o.color} for o in objects],
        }
        self.f.write(json.dumps(head)[:-1])
        self.f.write(', "images": [')
        for i in range(info.frame_count):
            self.f.write(("," if i else "") + json.dumps({
                "id": i + 1, "frame_index": i, "file_name": f"frame_{i:06d}.png", "width": info.width,
                "height": info.height, "pts": int(info.pts[i]), "time_s": round(info.time_of(i), 6)}))
        self.f.write('], "annotations": [')
        self.ann = 0

    def write_all(self, index: int, masks: Mapping[int, np.ndarray]) -> None:
        for oid, mask in masks.items():
            if self.object_id is not None and oid != self.object_id:
                continue
            area = int(np.count_nonzero(mask))
            if not area:
                continue
            self.ann += 1
            self.f.write(("," if self.ann > 1 else "") + json.dumps({
                "id": self.ann, "image_id": index + 1, "frame_index": index, "category_id": oid,
                "segmentation": self.encode_rle(mask), "area": area, "bbox": _bbox(mask), "iscrowd": 0}))
        self.frames += 1

    def write(self, index: int, rgb: np.ndarray, mask: np.ndarray) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    def finish(self) -> None:
        self.f.write("]}")
        self.f.close()
        super().finish()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.f.close()
        super().abort()


def _rgba(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.dstack((rgb, mask.astype(np.uint8) * 255))


# --------------------------------------------------------------------------------------------------- checks

def webm_alpha(path: Path, index: int = 0) -> np.ndarray | None:
    """The alpha plane of frame ``index`` of a VP9 WebM, decoded with the libvpx-vp9 decoder (FFmpeg's own VP9
    decoder ignores alpha); None when the file has no alpha."""
    import av

    from reelforge.adapters.media.inputs import open_input

    with open_input(path, what="WebM matte") as ic:
        st = ic.streams.video[0]
        ctx: Any = av.codec.CodecContext.create("libvpx-vp9", "r")
        seen = 0
        for pkt in ic.demux(st):
            if not pkt.size:
                continue
            for frame in ctx.decode(pkt):
                if seen == index:
                    if not frame.format.name.startswith("yuva"):
                        return None
                    return np.asarray(frame.to_ndarray(format="rgba")[..., 3])
                seen += 1
    return None


# --------------------------------------------------------------------------------------------------- audio

def _mux_audio(video: Path, source: Path, out: Path, audio_codecs: Sequence[str]) -> list[str]:
    """``out``: the video of ``video`` with every audio stream of ``source`` (copied, or AAC where MP4 cannot hold
    the codec), timestamps as they are. Returns notes on what was converted."""
    from reelforge.adapters.media.ffmpeg import run_ffmpeg
    from reelforge.adapters.media.inputs import ffmpeg_input_args

    args: list[str] = ["-copyts", *ffmpeg_input_args(), "-i", str(video), *ffmpeg_input_args(), "-i", str(source),
                       "-map", "0:v:0", "-map", "1:a?", "-c:v", "copy", "-dn", "-sn"]
    notes = []
    for n, codec in enumerate(audio_codecs):
        if codec in _MP4_AUDIO:
            args += [f"-c:a:{n}", "copy"]
        else:
            args += [f"-c:a:{n}", "aac", f"-b:a:{n}", "192k"]
            notes.append(f"audio #{n} re-encoded to AAC ({codec} does not fit MP4)")
    args += ["-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4", str(out)]
    run_ffmpeg(args)
    return notes


# --------------------------------------------------------------------------------------------------- driver

@dataclass
class _Plan:
    writers: list[_Writer] = field(default_factory=list)
    coco: list[_CocoJson] = field(default_factory=list)


def export_name(stem: str, kind: str, obj: ExportObject | None) -> str:
    """The file name of an export: ``<source stem>_<object-N-name|all>_<kind><suffix>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "video"
    return f"{safe}_{obj.slug if obj is not None else 'all'}_{kind}{SUFFIXES[kind]}"


def write_exports(source: Path, frames: FrameSource, masks: Iterable[tuple[int, Mapping[int, np.ndarray]]],
                  objects: Sequence[ExportObject], kinds: Iterable[str], out_dir: Path, *,
                  progress: Callable[[int, int], None] | None = None, cancelled: Callable[[], bool] | None = None,
                  combined: bool | None = None, per_object: bool = True, threads: int = 2,
                  name: str | None = None) -> list[ExportFile]:
    """Write the exports ``kinds`` into ``out_dir`` in one streaming pass: of every object when ``per_object``,
    and of all objects together when ``combined`` (by default: with more than one object, or when not
    ``per_object``). Returns the files, per kind then object (the combined file last).

    ``masks`` yields ``(frame_index, {object_id: bool (H, W) mask})`` in increasing frame order; a frame it skips,
    or an object missing from a frame, has an empty mask, so every export keeps the source's frame count. Sizes
    are those of `frames.info` (as shown). ``progress(done, total)`` is called after each frame;
    ``cancelled()`` is checked before each frame (JobCancelled). ``name``: the source's file name for the
    exports' names (default: the source path's).
    """
    kinds = check_kinds(kinds)
    info = frames.info
    if not objects:
        raise errors.ValidationFailed("There is no object to export", code="validation_error")
    ids = [o.id for o in objects]
    if len(set(ids)) != len(ids):
        raise errors.ValidationFailed("Two objects have the same id", code="validation_error")
    combined = (len(objects) > 1 or not per_object) if combined is None else combined
    if not combined and not per_object:
        raise errors.ValidationFailed("Ask for the combined export, the per-object ones, or both",
                                      code="validation_error")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets: list[ExportObject | None] = [*(objects if per_object else ()), *([None] if combined else [])]
    encode_rle = rle_encoder()
    plan = _Plan()
    stem = Path(name or Path(source).name).stem
    try:
        for kind in kinds:
            for obj in targets:
                path = out_dir / export_name(stem, kind, obj)
                oid = obj.id if obj is not None else None
                if kind == MATTE_MOV:
                    plan.writers.append(_MatteMov(path, oid, info))
                elif kind == MATTE_WEBM:
                    plan.writers.append(_MatteWebm(path, oid, info, threads))
                elif kind == PREVIEW_MP4:
                    plan.writers.append(_Preview(path, oid, info, threads, Path(source)))
                elif kind == PNG_ZIP:
                    plan.writers.append(_PngZip(path, oid, info))
                elif kind == COCO_JSON:
                    plan.coco.append(_CocoJson(path, oid, info, objects, name or Path(source).name, encode_rle))
        everything: list[_Writer] = [*plan.writers, *plan.coco]
        needs_pixels = bool(plan.writers)
        empty = np.zeros((info.height, info.width), dtype=bool)
        for index, rgb, frame_masks in _frames_with_masks(frames, masks, ids, needs_pixels):
            if cancelled is not None and cancelled():
                raise errors.JobCancelled(f"Cancelled at frame {index}")
            union: np.ndarray | None = None
            if combined and plan.writers:
                union = np.zeros_like(empty)
                for m in frame_masks.values():
                    union |= m
            for w in plan.writers:
                mask = union if w.object_id is None else frame_masks.get(w.object_id, empty)
                assert mask is not None and rgb is not None
                w.write(index, rgb, mask)
            for c in plan.coco:
                c.write_all(index, frame_masks)
            if progress is not None:
                progress(index + 1, info.frame_count)
        results: list[ExportFile] = []
        for w in everything:
            w.finish()
            results.append(ExportFile(kind=w.kind, object_id=w.object_id, path=w.path, filename=w.path.name,
                                      content_type=CONTENT_TYPES[w.kind], size=w.path.stat().st_size,
                                      frames=w.frames, notes=tuple(w.notes)))
        return results
    except BaseException:
        for w in [*plan.writers, *plan.coco]:
            w.abort()
            with contextlib.suppress(FileNotFoundError):
                if w.path.exists() and w.path.parent == out_dir:
                    w.path.unlink()
        raise


def _frames_with_masks(frames: FrameSource, masks: Iterable[tuple[int, Mapping[int, np.ndarray]]],
                       ids: Sequence[int], pixels: bool
                       ) -> Iterator[tuple[int, np.ndarray | None, dict[int, np.ndarray]]]:
    """Every frame of the video in order with its masks (empty where ``masks`` has none); the pixels only when
    an export needs them."""
    info = frames.info
    shape = (info.height, info.width)
    it = iter(masks)
    pending = next(it, None)
    last = -1
    source: Iterator[tuple[int, np.ndarray]] | None = frames.iter_frames() if pixels else None
    try:
        for index in range(info.frame_count):
            rgb: np.ndarray | None = None
            if source is not None:
                got, rgb = next(source)
                assert got == index
            frame_masks: dict[int, np.ndarray] = {}
            if pending is not None and pending[0] == index:
                for oid, m in pending[1].items():
                    if oid not in ids:
                        continue
                    m = np.asarray(m)
                    if m.shape != shape:
                        raise errors.ValidationFailed(
                            f"The mask of object {oid} on frame {index} is {m.shape[1]}x{m.shape[0]}; the video "
                            f"is {info.width}x{info.height}", code="invalid_mask")
                    frame_masks[oid] = m.astype(bool, copy=False)
                last, pending = index, next(it, None)
            if pending is not None and pending[0] <= index:
                raise errors.ValidationFailed(f"Masks must come in frame order (frame {pending[0]} after {last})",
                                              code="invalid_mask")
            yield index, rgb, frame_masks
        if pending is not None:
            raise errors.ValidationFailed(f"A mask for frame {pending[0]} is outside the video", code="invalid_mask")
    finally:
        if source is not None:
            close = getattr(source, "close", None)
            if close is not None:
                close()


def have_encoders() -> dict[str, bool]:
    """Whether this machine's FFmpeg libraries have what each kind needs (for a health page or a test)."""
    import av

    need = {MATTE_MOV: ("prores_ks",), MATTE_WEBM: ("libvpx-vp9",), PREVIEW_MP4: ("libx264", "aac"),
            PNG_ZIP: (), COCO_JSON: ()}
    out = {}
    for kind, codecs in need.items():
        ok = True
        for name in codecs:
            try:
                av.codec.Codec(name, "w")
            except Exception:
                ok = False
        out[kind] = ok
    return out


# --------------------------------------------------------------------------------------------------- the job step

# Bytes per pixel one file's encoder holds: the frames it keeps (ProRes: about 2 of yuva444p10le, 8 bytes a pixel;
# VP9 with lag-in-frames 8 and alpha: about 12 of 2.5 bytes; x264 veryfast's look-ahead: about 24 of 1.5 bytes;
# PNG: the RGBA picture being compressed).
_ENCODER_BYTES = {MATTE_MOV: 16, MATTE_WEBM: 30, PREVIEW_MP4: 36, PNG_ZIP: 4, COCO_JSON: 0}


def export_memory(info: FrameInfo, kinds: Sequence[str], files_per_kind: int) -> int:
    """Bytes the exports hold at most: a decoded frame and its RGB and RGBA copies, one mask per file, and each
    encoder's own frames; independent of the video's length."""
    pixels = info.width * info.height
    encoders = sum(_ENCODER_BYTES.get(k, 0) for k in kinds) * files_per_kind * pixels
    return pixels * 3 * 4 + pixels * files_per_kind + encoders + 64 * 1024**2


def run_exports(ctx: Any, plan: Mapping[str, Any], manifest: Mapping[str, Any], kinds: Sequence[str],
                masks: Callable[[], Iterable[tuple[int, Mapping[int, tuple[Mapping[str, Any], str]]]]]
                ) -> list[dict[str, Any]]:
    """The `video.rotoscope` job's picture exports (the pipeline's `export_hook`): the session's video fetched
    through the workers' source cache, every frame streamed with the masks ``masks()`` yields (COCO RLE per
    object, frames of the job's range; the other frames' masks are empty), each file stored as an asset of the
    job. Answers one output per file: kind, asset_id, size, content_type, object_id (None: all objects),
    filename, frames, notes."""
    import uuid

    from reelforge.apps.roto.pipeline import EXPORT_CATEGORY, _source
    from reelforge.apps.roto.service import media_limits
    from reelforge.domain.media import check_decode_memory

    kinds = check_kinds(kinds)
    svc = ctx.services
    owner_id = str(plan["owner_id"])
    asset = svc.assets.owned_asset(owner_id, plan["asset_id"])
    names = plan.get("names") or {}
    objects = [ExportObject(int(o), names.get(str(o)) or f"Object {o}") for o in plan["objects"]]
    per_object = bool(plan.get("per_object"))
    decode = rle_decoder()

    def decoded() -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        for frame, objs in masks():
            yield int(frame), {int(o): decode(rle) for o, (rle, _src) in objs.items()}

    outputs: list[dict[str, Any]] = []
    with _source(ctx, plan) as use, ctx.scratch("roto-exports") as tmp:
        with FrameSource(use.path, limits=media_limits(svc.settings), cache_frames=1) as fs:
            files = (len(objects) if per_object else 0) + (1 if len(objects) > 1 or not per_object else 0)
            check_decode_memory(export_memory(fs.info, kinds, files), ctx.memory_mb, what="writing these exports")
            total = fs.info.frame_count
            step = max(1, total // 50)

            def report(done: int, _: int) -> None:
                if done % step == 0 or done == total:
                    ctx.progress(0.93 + 0.06 * done / total, f"exporting: frame {done}/{total}")

            written = write_exports(use.path, fs, decoded(), objects, kinds, Path(tmp), progress=report,
                                    cancelled=ctx.stopping, per_object=per_object,
                                    name=asset.filename or f"roto-{str(plan['session_id'])[:8]}.mp4")
        for f in written:
            who = "all" if f.object_id is None else str(f.object_id)
            stored = svc.assets.store_output_file(
                f.path, owner_id=owner_id, job_id=ctx.job_id, content_type=f.content_type, filename=f.filename,
                lifecycle="hot", category=EXPORT_CATEGORY,
                metadata={"kind": "roto.export", "export": f.kind, "session_id": plan["session_id"],
                          "object_id": f.object_id, "frames": f.frames},
                asset_id=uuid.uuid5(uuid.NAMESPACE_URL, f"reelforge:{ctx.job_id}:roto:{f.kind}:{who}").hex)
            outputs.append({"kind": f.kind, "asset_id": stored.id, "size": stored.size,
                            "content_type": f.content_type, "object_id": f.object_id, "filename": f.filename,
                            "frames": f.frames, "notes": list(f.notes)})
            f.path.unlink(missing_ok=True)
    return outputs
