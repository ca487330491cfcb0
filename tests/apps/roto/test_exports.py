"""Exports of rotoscoping masks, checked on videos made here and read back with the ffmpeg binary and PyAV.

Each source (constant and variable frame rate, rotated, odd-sized, with and without audio, audio MP4 cannot hold)
gets every export for two objects; the checks read the files with tools other than the writer: the ffmpeg
binary's ``framecrc`` muxer lists every packet's timestamps, its stream banner gives codec and pixel format, the
libvpx-vp9 decoder reads the WebM's alpha, PyAV decodes the pictures, and the COCO RLE strings are compared
with pycocotools' own output.
"""

from __future__ import annotations

import json
import re
import subprocess
import tracemalloc
import zipfile
from collections.abc import Iterator
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from reelforge import errors
from reelforge.adapters.media.ffmpeg import ffmpeg_exe, run_ffmpeg
from reelforge.apps.roto import exports as ex
from reelforge.apps.roto.frames import FrameInfo, FrameSource
from tests.fixtures import videos as v
from tests.fixtures.videos import ffprobe

OBJECTS = [ex.ExportObject(1, "Person", "#ff3b30"), ex.ExportObject(7, "Red ball!", "#34c759")]


def make_odd_video(path: Path) -> Path:
    """99x75 H.264 4:4:4 (odd sizes are legal there) in Matroska, no audio."""
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=99x75:rate=25:duration=1", "-c:v", "libx264", "-preset",
                "veryfast", "-pix_fmt", "yuv444p", "-g", "10", "-f", "matroska", str(path)])
    return path


def make_pcm_video(path: Path) -> Path:
    """testsrc2 with PCM audio in Matroska: audio MP4 cannot hold as it is."""
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=128x96:rate=24:duration=1.5", "-f", "lavfi", "-i",
                "sine=frequency=500:sample_rate=48000:duration=1.5", "-c:v", "libx264", "-preset", "veryfast",
                "-pix_fmt", "yuv420p", "-g", "12", "-c:a", "pcm_s16le", "-f", "matroska", str(path)])
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("export-src")
    return {
        "cfr": v.make_testsrc(d / "cfr.mp4", seconds=2.0, gop=12),
        "vfr": v.make_vfr_video(d / "vfr.mp4", seconds=2.0),
        "vfr_silent": v.make_vfr_video(d / "vfr_silent.mkv", seconds=1.5, audio=False),
        "rot90": v.make_rotated_video(d / "rot90.mp4", 90, size=(160, 96), seconds=1.5),
        "odd": make_odd_video(d / "odd.mkv"),
        "pcm": make_pcm_video(d / "pcm.mkv"),
    }


def mask_of(info: FrameInfo, oid: int, n: int) -> np.ndarray:
    """A rectangle per object that moves with the frame index (object 7 is absent on every fifth frame)."""
    m = np.zeros((info.height, info.width), dtype=bool)
    if oid == 1:
        x = (n * 3) % max(1, info.width - 30)
        m[5:5 + info.height // 3, x:x + 25] = True
    elif n % 5:
        m[info.height // 2: info.height // 2 + 20, 10:10 + info.width // 3] = True
    return m


def masks_for(info: FrameInfo, skip: set[int] = frozenset()) -> Iterator[tuple[int, dict[int, np.ndarray]]]:  # type: ignore[assignment]
    for n in range(info.frame_count):
        if n not in skip:
            yield n, {1: mask_of(info, 1, n), 7: mask_of(info, 7, n)}


def union_of(info: FrameInfo, n: int) -> np.ndarray:
    return mask_of(info, 1, n) | mask_of(info, 7, n)


# ---------------------------------------------------------------------------------------------- reading back

def framecrc(path: Path) -> tuple[Fraction, list[int]]:
    """The video stream's time base and every packet's pts, sorted, as the ffmpeg binary's framecrc lists them."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "framecrc", "-"], capture_output=True, check=True).stdout.decode()
    tb = Fraction(re.search(r"^#tb 0: (\d+/\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    pts = sorted(int(line.split(",")[2]) for line in out.splitlines() if line and not line.startswith("#"))
    return tb, pts


def banner(path: Path, *decoder: str) -> str:
    """ffmpeg's description of the file's streams (stderr of ``ffmpeg -i``)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", *decoder, "-i", str(path)], capture_output=True)
    return proc.stderr.decode()


def source_times(info: FrameInfo) -> list[Fraction]:
    return [p * info.time_base for p in info.pts]


def decode_rgba(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgba") for f in c.decode(c.streams.video[0])]


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO's compressed RLE back to a mask (the inverse of pycocotools' rleToString, written from its format)."""
    h, w = rle["size"]
    s = rle["counts"]
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for run in counts:
        flat[pos:pos + run] = val
        pos += run
        val = not val
    assert pos == h * w
    return flat.reshape((h, w), order="F")


# ---------------------------------------------------------------------------------------------- the exports

def export_all(src: Path, out: Path, **kwargs: Any) -> tuple[FrameInfo, list[ex.ExportFile]]:
    with FrameSource(src) as fs:
        files = ex.write_exports(src, fs, masks_for(fs.info, kwargs.pop("skip", set())), OBJECTS, list(ex.KINDS),
                                 out, **kwargs)
        return fs.info, files


@pytest.fixture(scope="module")
def exported(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, tuple[FrameInfo, list[ex.ExportFile]]]:
    out = tmp_path_factory.mktemp("exports")
    return {name: export_all(path, out / name) for name, path in sources.items()}


def test_every_kind_per_object_and_combined(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]]) -> None:
    info, files = exported["cfr"]
    assert [(f.kind, f.object_id) for f in files] == [(k, o) for k in ex.KINDS for o in (1, 7, None)]
    for f in files:
        assert f.path.is_file() and f.size == f.path.stat().st_size > 0 and f.frames == info.frame_count
        assert f.content_type == ex.CONTENT_TYPES[f.kind] and f.filename == f.path.name
    assert {f.filename for f in files if f.object_id == 7} == {
        f"cfr_object-7-red-ball_{k}{ex.SUFFIXES[k]}" for k in ex.KINDS}
    # nothing half-written is left beside them
    assert not [p for p in files[0].path.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["cfr", "vfr", "vfr_silent", "rot90", "odd", "pcm"])
def test_videos_keep_frame_count_and_timing(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]],
                                            name: str) -> None:
    info, files = exported[name]
    want = source_times(info)
    for f in files:
        if f.kind not in (ex.MATTE_MOV, ex.MATTE_WEBM, ex.PREVIEW_MP4):
            continue
        tb, pts = framecrc(f.path)
        got = [p * tb for p in pts]
        assert len(got) == info.frame_count, (f.filename, len(got))
        if f.kind == ex.MATTE_WEBM:  # WebM keeps milliseconds
            assert max(abs(float(a - b)) for a, b in zip(got, want, strict=True)) <= 0.001, f.filename
        else:
            assert got == want, f.filename
        assert v.count_frames(f.path) == info.frame_count


@pytest.mark.parametrize("name", ["cfr", "rot90", "vfr"])
def test_stream_formats_and_no_rotation(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]],
                                        sources: dict[str, Path], name: str) -> None:
    info, files = exported[name]
    size = f"{info.width}x{info.height}"
    assert ("rotation of -90" in banner(sources[name])) == (name == "rot90")  # the source's display matrix
    for f in files:
        if f.kind == ex.MATTE_MOV:
            text = banner(f.path)
            assert re.search(r"Video: prores \(4444\).*yuva444p", text), text
        elif f.kind == ex.MATTE_WEBM:
            assert "alpha_mode      : 1" in banner(f.path)
            assert re.search(r"Video: vp9 \(libvpx-vp9\).*yuva420p", banner(f.path, "-c:v", "libvpx-vp9"))
        elif f.kind == ex.PREVIEW_MP4:
            text = banner(f.path)
            assert re.search(r"Video: h264 .*yuv420p", text), text
        else:
            continue
        assert size in text and "rotation" not in text.lower(), text
        with av.open(str(f.path)) as c:
            # no display matrix: the pixels are upright already
            assert next(c.decode(c.streams.video[0])).rotation == 0


def test_preview_audio(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]], sources: dict[str, Path]) -> None:
    for name, codec in (("cfr", "aac"), ("vfr", "aac"), ("rot90", "aac"), ("pcm", "aac")):
        _, files = exported[name]
        preview = next(f for f in files if f.kind == ex.PREVIEW_MP4 and f.object_id is None)
        audio = [s for s in v.stream_summary(preview.path) if s["type"] == "audio"]
        assert [s["codec"] for s in audio] == [codec], name
        assert re.search(r"Audio: aac", banner(preview.path))
        with av.open(str(preview.path)) as c, av.open(str(sources[name])) as s:
            mine = c.streams.audio[0]
            theirs = s.streams.audio[0]
            mine_s = float(sum(p.duration or 0 for p in c.demux(mine)) * Fraction(mine.time_base or 1))
            theirs_s = float(sum(p.duration or 0 for p in s.demux(theirs)) * Fraction(theirs.time_base or 1))
            assert mine_s == pytest.approx(theirs_s, abs=0.05), name
        if name == "pcm":
            assert any("AAC" in n for n in preview.notes)
        else:
            assert not preview.notes
    for name in ("vfr_silent", "odd"):
        _, files = exported[name]
        preview = next(f for f in files if f.kind == ex.PREVIEW_MP4 and f.object_id is None)
        assert [s["type"] for s in v.stream_summary(preview.path)] == ["video"]


@pytest.mark.parametrize("name", ["cfr", "rot90", "odd"])
def test_pixels(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]], sources: dict[str, Path],
                name: str) -> None:
    info, files = exported[name]
    with FrameSource(sources[name]) as fs:
        shown = [fs.frame(n).astype(int) for n in range(info.frame_count)]
    by = {(f.kind, f.object_id): f for f in files}
    # ProRes 4444: the cut-out's colour and its alpha
    mov = decode_rgba(by[(ex.MATTE_MOV, 1)].path)
    for n in (0, 7, info.frame_count - 1):
        mask = mask_of(info, 1, n)
        assert mov[n].shape == (info.height, info.width, 4)
        assert ((mov[n][..., 3] > 127) == mask).mean() > 0.995
        assert np.abs(mov[n][..., :3].astype(int) - shown[n]).mean() < 3.0
    # VP9 alpha, read with the libvpx-vp9 decoder
    for n in (1, 7):
        alpha = ex.webm_alpha(by[(ex.MATTE_WEBM, None)].path, n)
        assert alpha is not None and alpha.shape == (info.height, info.width)
        assert ((alpha > 127) == union_of(info, n)).mean() > 0.97
    # the preview: the object where the mask is, green elsewhere (padded to even sizes for H.264)
    preview = by[(ex.PREVIEW_MP4, 7)]
    pic = v.frames_rgb(preview.path)
    assert len(pic) == info.frame_count
    even = (info.height + info.height % 2, info.width + info.width % 2)
    assert pic[0].shape[:2] == even
    assert bool(preview.notes) == (even != (info.height, info.width))
    for n in (1, 2):
        mask = mask_of(info, 7, n)
        got = pic[n][: info.height, : info.width].astype(int)
        inner = mask.copy()
        inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        assert np.abs(got[~mask] - ex.GREEN.astype(int)).mean() < 8
        assert np.abs(got[inner] - shown[n][inner]).mean() < 12


def test_png_sequence(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]], sources: dict[str, Path]) -> None:
    info, files = exported["vfr"]
    f = next(f for f in files if f.kind == ex.PNG_ZIP and f.object_id is None)
    with FrameSource(sources["vfr"]) as fs, zipfile.ZipFile(f.path) as z:
        names = z.namelist()
        pngs = [n for n in names if n.endswith(".png")]
        assert pngs == [f"frame_{i:06d}.png" for i in range(info.frame_count)]
        meta = json.loads(z.read("frames.json"))
        assert [Fraction(x["time_s"]).limit_denominator(10**6) for x in meta["frames"]] == [
            Fraction(round(float(t - source_times(info)[0]), 6)).limit_denominator(10**6) for t in source_times(info)]
        for n in (0, 11, info.frame_count - 1):
            img = np.asarray(Image.open(BytesIO(z.read(pngs[n]))))
            assert img.shape == (info.height, info.width, 4)
            assert np.array_equal(img[..., 3] > 0, union_of(info, n))  # lossless
            assert np.array_equal(img[..., :3], fs.frame(n))


# pycocotools 2.0.11's `mask.encode` strings for these masks (computed once with it)
COCO_CASES = [
    (np.zeros((2, 2), bool), "4"),
    (np.ones((3, 2), bool), "06"),
    (np.array([[1, 0, 0], [1, 1, 0]], bool), "021O1"),
    (np.array([[1, 0, 0, 0, 1, 1, 1, 1, 1], [1, 1, 0, 1, 0, 1, 0, 1, 1], [0, 0, 0, 0, 1, 1, 1, 0, 1], [1, 1, 1, 1, 0, 0, 1, 1, 0], [0, 1, 1, 0, 1, 0, 1, 0, 0], [1, 0, 1, 0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0, 0, 0, 0]], bool),
     "021O0010O141MNO011OO01011NO0021OOO00023"),
    (np.pad(np.ones((40, 50), bool), ((30, 10), (5, 70))), "^=X1X1" + "0" * 97 + "R^5"),
]


def test_coco_rle_matches_pycocotools() -> None:
    for mask, counts in COCO_CASES:
        rle = ex.rle_encoder()(mask)
        assert rle == {"size": list(mask.shape), "counts": counts}
        assert np.array_equal(rle_decode(rle), mask)
        assert np.array_equal(ex.rle_decoder()({"size": list(mask.shape), "counts": counts}), mask)
    for bad in ({"size": [2, 2], "counts": "5"}, {"size": [2, 2], "counts": "0"}, {"size": [3, 3], "counts": "1o"}):
        with pytest.raises(errors.ValidationFailed) as e:
            ex.rle_decoder()(bad)
        assert e.value.code == "invalid_mask"


def test_coco_json(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]]) -> None:
    info, files = exported["rot90"]
    doc = json.loads(next(f for f in files if f.kind == ex.COCO_JSON and f.object_id is None).path.read_text())
    assert doc["info"]["width"] == info.width == 96 and doc["info"]["height"] == info.height == 160
    assert [c["id"] for c in doc["categories"]] == [1, 7] and doc["categories"][1]["name"] == "Red ball!"
    assert [im["frame_index"] for im in doc["images"]] == list(range(info.frame_count))
    assert [im["pts"] for im in doc["images"]] == list(info.pts)
    by_frame: dict[int, dict[int, dict[str, Any]]] = {}
    for a in doc["annotations"]:
        by_frame.setdefault(a["frame_index"], {})[a["category_id"]] = a
    for n in range(info.frame_count):
        for oid in (1, 7):
            want = mask_of(info, oid, n)
            ann = by_frame.get(n, {}).get(oid)
            if not want.any():
                assert ann is None  # an object absent from a frame has no annotation there
                continue
            assert ann is not None and ann["image_id"] == n + 1
            assert np.array_equal(rle_decode(ann["segmentation"]), want)
            ys, xs = np.nonzero(want)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == want.sum()
    one = json.loads(next(f for f in files if f.kind == ex.COCO_JSON and f.object_id == 1).path.read_text())
    assert {a["category_id"] for a in one["annotations"]} == {1}


def test_skipped_frames_are_empty(sources: dict[str, Path], tmp_path: Path) -> None:
    with FrameSource(sources["vfr_silent"]) as fs:
        info = fs.info
        skip = {0, 3, 4, info.frame_count - 1}
        files = ex.write_exports(sources["vfr_silent"], fs, masks_for(info, skip), OBJECTS[:1],
                                 [ex.PNG_ZIP, ex.MATTE_MOV], tmp_path)
    assert [(f.kind, f.object_id) for f in files] == [(ex.PNG_ZIP, 1), (ex.MATTE_MOV, 1)]  # one object: no "all"
    with zipfile.ZipFile(files[0].path) as z:
        for n in range(info.frame_count):
            alpha = np.asarray(Image.open(BytesIO(z.read(f"frame_{n:06d}.png"))))[..., 3]
            assert np.array_equal(alpha > 0, np.zeros_like(alpha, bool) if n in skip else mask_of(info, 1, n))
    tb, pts = framecrc(files[1].path)
    assert [p * tb for p in pts] == source_times(info)


def test_combined_only(sources: dict[str, Path], tmp_path: Path) -> None:
    with FrameSource(sources["vfr_silent"]) as fs:
        files = ex.write_exports(sources["vfr_silent"], fs, masks_for(fs.info), OBJECTS, [ex.MATTE_WEBM, ex.COCO_JSON],
                                 tmp_path, per_object=False)
    assert [(f.kind, f.object_id) for f in files] == [(ex.MATTE_WEBM, None), (ex.COCO_JSON, None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.filename for f in files)
    from reelforge.apps.roto import masks

    assert ex.ExportObject(3).color == "#{:02x}{:02x}{:02x}".format(*masks.color_for(3))
    assert ex.ExportObject(3, color="#010203").color == "#010203"


def test_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Python-side peak while exporting 240 frames stays a small fraction of the frames and masks it wrote."""
    src = v.make_testsrc(tmp_path / "long.mp4", seconds=10.0, size=(192, 144), gop=24, audio=False)
    with FrameSource(src) as fs:
        info = fs.info
        assert info.frame_count == 240
        total = info.frame_count * info.width * info.height * (3 + 2)
        consumed: list[int] = []

        def lazy() -> Iterator[tuple[int, dict[int, np.ndarray]]]:
            for n, masks in masks_for(info):
                consumed.append(n)
                yield n, masks

        tracemalloc.start()
        try:
            ex.write_exports(src, fs, lazy(), OBJECTS, [ex.PNG_ZIP, ex.COCO_JSON, ex.MATTE_MOV], tmp_path / "out",
                             progress=lambda done, total_: consumed.append(-done))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < total / 8, (peak, total)
    # masks were pulled one frame ahead at most: frame n+1 is asked for only once frame n-1 is written
    assert consumed == [0, 1, *[x for n in range(1, 240) for x in (-n, n + 1)][:-1], -240]


def test_refusals(sources: dict[str, Path], tmp_path: Path) -> None:
    with FrameSource(sources["vfr_silent"]) as fs:
        info = fs.info
        for kinds, code in ((["gif"], "export_unavailable"), ([], "validation_error")):
            with pytest.raises(errors.ValidationFailed) as e:
                ex.write_exports(sources["vfr_silent"], fs, masks_for(info), OBJECTS, kinds, tmp_path)
            assert e.value.code == code
        for objects, per_object, combined in (([], True, None), ([OBJECTS[0], OBJECTS[0]], True, None),
                                              (OBJECTS, False, False)):
            with pytest.raises(errors.ValidationFailed) as e:
                ex.write_exports(sources["vfr_silent"], fs, masks_for(info), objects, [ex.COCO_JSON], tmp_path,
                                 per_object=per_object, combined=combined)
            assert e.value.code == "validation_error"
        wrong = iter([(0, {1: np.zeros((info.height + 1, info.width), bool)})])
        with pytest.raises(errors.ValidationFailed) as e:
            ex.write_exports(sources["vfr_silent"], fs, wrong, OBJECTS, [ex.MATTE_MOV], tmp_path)
        assert e.value.code == "invalid_mask"
        backwards = iter([(3, {1: mask_of(info, 1, 3)}), (2, {1: mask_of(info, 1, 2)})])
        with pytest.raises(errors.ValidationFailed) as e:
            ex.write_exports(sources["vfr_silent"], fs, backwards, OBJECTS, [ex.COCO_JSON], tmp_path)
        assert e.value.code == "invalid_mask"
        calls = []

        def cancelled() -> bool:
            calls.append(1)
            return len(calls) > 5

        with pytest.raises(errors.JobCancelled):
            ex.write_exports(sources["vfr_silent"], fs, masks_for(info), OBJECTS, list(ex.KINDS), tmp_path / "c",
                             cancelled=cancelled)
    assert list((tmp_path / "c").iterdir()) == []  # no partial or finished file is left
    assert not list(tmp_path.glob("*.*"))


def test_encoders_present() -> None:
    assert ex.have_encoders() == {k: True for k in ex.KINDS}


# ---------------------------------------------------------------------------------------------- through the job

def test_rotoscope_job_stores_every_export(tmp_path: Path, sqlite_url: str) -> None:
    """`video.rotoscope` with every export, on a real worker: the picture exports come from `run_exports`,
    are the job's assets, and agree with the masks the job's own COCO export holds, frame by frame."""
    from tests.apps.roto.roto_env import (
        click,
        clip_named,
        encode_clip,
        http,
        new_session,
        register,
        roto_env,
        upload,
        wait_job,
    )

    clip = clip_named("pan_blob", size=(192, 108), frames=10)
    src = encode_clip(tmp_path / "blob clip.mp4", clip, frames=10)
    with roto_env(tmp_path, sqlite_url) as env:
        alice = register(env.client, "alice@example.com")
        session = new_session(alice, upload(env, alice, src))
        r = alice.post(f"/v1/roto/sessions/{session['id']}/prompts", json={"frame": 0, "points": [click(clip, 0)]})
        assert r.status_code == 200, r.text
        r = alice.post("/v1/jobs", json={"kind": "video.rotoscope", "input": {
            "session_id": session["id"], "exports": list(ex.KINDS), "per_object": True}})
        assert r.status_code in (201, 202), r.text
        job = wait_job(alice, r.json()["id"])
        assert job["status"] == "succeeded", job
        outs = job["outputs"]["exports"]
        # one object: per object, no combined file; COCO from the pipeline (all objects)
        assert sorted((o["kind"], o["object_id"]) for o in outs) == sorted(
            [("coco", None)] + [(k, 1) for k in ex.KINDS if k != ex.COCO_JSON])
        files: dict[str, Path] = {}
        for o in outs:
            asset = alice.get(f"/v1/assets/{o['asset_id']}").json()
            assert asset["job_id"] == job["id"] and asset["size"] == o["size"] > 0
            body = http(env, "GET", asset["download"]["url"]).content
            files[o["kind"]] = tmp_path / (asset["filename"] or o["kind"])
            files[o["kind"]].write_bytes(body)
            if o["kind"] != "coco":
                assert asset["filename"].startswith("blob_clip_object-1")
                assert o["frames"] == 10
    coco = json.loads(files["coco"].read_text())
    truth_masks = {a["image_id"] - 1: rle_decode(a["segmentation"]) for a in coco["annotations"]}
    assert sorted(truth_masks) == list(range(10))
    mov = decode_rgba(files[ex.MATTE_MOV])
    assert len(mov) == 10 and framecrc(files[ex.MATTE_MOV])[1] == framecrc(src)[1]
    for n in (0, 5, 9):
        assert ((mov[n][..., 3] > 127) == truth_masks[n]).mean() > 0.995
        alpha = ex.webm_alpha(files[ex.MATTE_WEBM], n)
        assert alpha is not None and ((alpha > 127) == truth_masks[n]).mean() > 0.97
    with zipfile.ZipFile(files[ex.PNG_ZIP]) as z:
        assert np.array_equal(np.asarray(Image.open(BytesIO(z.read("frame_000007.png"))))[..., 3] > 0, truth_masks[7])
    assert v.count_frames(files[ex.PREVIEW_MP4]) == 10


@pytest.mark.parametrize("name", ["cfr", "vfr", "rot90"])
def test_exports_pass_ffprobe(exported: dict[str, tuple[FrameInfo, list[ex.ExportFile]]], name: str) -> None:
    """What an editor's importer reads, as ffprobe reports it: the stream's codec and alpha pixel format, the
    source's frame count and each frame's time (variable frame rate too), no rotation, audio in the preview."""
    info, files = exported[name]
    want = [float(t) for t in source_times(info)]
    expected = {ex.MATTE_MOV: ("prores", "yuva444p"), ex.MATTE_WEBM: ("vp9", None), ex.PREVIEW_MP4: ("h264", "yuv420p")}
    for f in files:
        if f.kind not in expected:
            continue
        codec, pix = expected[f.kind]
        streams = ffprobe(f.path, "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,pix_fmt,width,height,nb_read_frames:stream_tags:"
                          "stream_side_data")["streams"]
        video = [s for s in streams if s["codec_type"] == "video"]
        assert len(video) == 1, (f.filename, streams)
        s = video[0]
        assert s["codec_name"] == codec and (pix is None or s["pix_fmt"].startswith(pix)), (f.filename, s)
        if f.kind == ex.MATTE_WEBM:  # the alpha plane travels as side data; the tag says it is there
            assert s.get("tags", {}).get("alpha_mode") == "1", (f.filename, s)
        assert (s["width"], s["height"]) == (info.width, info.height), (f.filename, s)
        assert int(s["nb_read_frames"]) == info.frame_count, (f.filename, s)
        assert not any("rotation" in d for d in s.get("side_data_list", [])), (f.filename, s)
        frames = ffprobe(f.path, "-select_streams", "v:0", "-show_entries", "frame=pts_time")["frames"]
        got = [float(fr["pts_time"]) for fr in frames]
        assert len(got) == len(want) and max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 0.001, f.filename
        if f.kind == ex.PREVIEW_MP4 and f.object_id is None:
            assert [x["codec_name"] for x in streams if x["codec_type"] == "audio"] == ["aac"], f.filename
