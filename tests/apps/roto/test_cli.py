"""`reelforge roto`: argument checking (exit 2 with a message, no traceback, before anything is sent), and real runs
of the command and of the demo against a live API and worker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from reelforge.apps.roto import cli as rc
from tests.integration import live_server as live
from tests.integration.live_server import api_key, closed_port_url, serve_with_worker


def app() -> typer.Typer:
    a = typer.Typer()
    rc.register(a, {})

    @a.command("other")
    def other() -> None:  # a second command, so that typer keeps `roto` as a subcommand name
        pass

    return a


def test_prompts_are_merged_per_object_and_frame() -> None:
    prompts = rc.collect_prompts(["10,20", "30.5,40@3", "2:5,6@3"], ["1,2", "2:7,8@3"], ["0,0,50,60@3"], 1)
    assert [(p.object, p.frame, p.points, p.box) for p in prompts] == [
        (1, 0, [(10.0, 20.0, 1), (1.0, 2.0, 0)], None),
        (1, 3, [(30.5, 40.0, 1)], (0.0, 0.0, 50.0, 60.0)),
        (2, 3, [(5.0, 6.0, 1), (7.0, 8.0, 0)], None),
    ]
    assert [p.object for p in rc.collect_prompts(["1,1"], [], [], 4)] == [4]
    assert rc.check_exports(None) == list(rc.DEFAULT_EXPORTS)
    assert rc.check_exports(["greenscreen", "coco", "greenscreen"]) == ["greenscreen", "coco"]
    assert rc.parse_range("3:9") == (3, 9) and rc.parse_range("0-0") == (0, 0) and rc.parse_range(None) is None


@pytest.mark.parametrize("points,negatives,boxes,obj,message", [
    ([], [], [], 1, "at least one --point or --box"),
    (["10"], [], [], 1, "--point expects 2 numbers (X,Y), not 1"),
    (["10,20@"], [], [], 1, "--point expects [OBJECT:]X,Y[@FRAME]"),
    (["10,20,30"], [], [], 1, "expects 2 numbers"),
    (["a,b"], [], [], 1, "--point expects"),
    (["10,20@x"], [], [], 1, "--point expects"),
    (["-1,20"], [], [], 1, "0 or more"),
    (["nan,2"], [], [], 1, "--point expects"),
    ([], ["1,2"], [], 1, "only negative points"),
    (["1,2"], ["2:1,2"], [], 1, "object 2 has only negative points"),
    ([], [], ["10,10,5,50"], 1, "X0 < X1"),
    ([], [], ["1,2,3"], 1, "expects 4 numbers"),
    ([], [], ["0,0,5,5", "1,1,6,6"], 1, "two boxes"),
    (["0:1,2"], [], [], 1, "numbered from 1"),
    (["1,2"], [], [], 0, "numbered from 1"),
])
def test_bad_prompts(points: list[str], negatives: list[str], boxes: list[str], obj: int, message: str) -> None:
    with pytest.raises(rc.UsageError) as e:
        rc.collect_prompts(points, negatives, boxes, obj)
    assert message in str(e.value)


def test_prompts_against_the_video() -> None:
    prompts = rc.collect_prompts(["10,20@4"], [], ["0,0,64,48@4"], 1)
    rc.check_against(prompts, 64, 48, 5, (0, 4))
    for width, height, frames, span, message in ((64, 48, 4, None, "past the video's last frame (3)"),
                                                 (10, 48, 5, None, "outside the 10x48 video"),
                                                 (64, 40, 5, None, "outside the 64x40 video"),
                                                 (64, 48, 5, (0, 5), "--range 0:5 reaches past")):
        with pytest.raises(rc.UsageError) as e:
            rc.check_against(prompts, width, height, frames, span)
        assert message in str(e.value)


@pytest.mark.parametrize("args,message", [
    (["--export", "gif", "--point", "1,2"], "--export 'gif' is not an export"),
    (["--point", "1;2"], "--point expects"),
    (["--box", "5,5,1,1"], "X0 < X1"),
    (["--range", "9:3", "--point", "1,2"], "--range expects START:END"),
    ([], "at least one --point or --box"),
])
def test_command_refuses_bad_arguments_before_sending(tmp_path: Path, args: list[str], message: str) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    # nothing listens there: had the command tried the server, it would exit 5 (unreachable), not 2
    r = CliRunner().invoke(app(), ["roto", str(video), *args, "--url", closed_port_url()])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_command_refuses_files_it_cannot_use(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    r = CliRunner().invoke(app(), ["roto", str(text), "--point", "1,2", "--url", closed_port_url()])
    assert r.exit_code == 2 and "is not a video this command knows" in r.output
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    r = CliRunner().invoke(app(), ["roto", str(video), "--point", "1,2", "-o", str(text), "--url", closed_port_url()])
    assert r.exit_code == 2 and "is a file; give a folder" in r.output
    r = CliRunner().invoke(app(), ["roto", str(tmp_path / "missing.mp4"), "--point", "1,2"])
    assert r.exit_code == 2 and "does not exist" in r.output
    # valid arguments do reach for the server: unreachable is exit 5
    r = CliRunner().invoke(app(), ["roto", str(video), "--point", "1,2", "--url", closed_port_url()],
                           env={"REELFORGE_API_KEY": "rf_test"})
    assert r.exit_code == 5, r.output


# ---------------------------------------------------------------------------------------------- a real run

@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    """A real API on a socket and an in-process worker answering the rotoscoping calls."""
    from tests.apps.roto.roto_env import _live

    with serve_with_worker(tmp_path, sqlite_url, ready=_live,
                           roto={"cache_dir": str(tmp_path / "roto-cache")}) as url:
        yield url


def big_clip(path: Path) -> Path:
    """The demo's disc clip at 640x360 with film grain, losslessly encoded: over the 6 MiB multipart threshold."""
    import av
    import numpy as np

    from reelforge.apps.roto import demo

    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as out:
        stream: Any = out.add_stream("libx264", rate=demo.FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv444p"
        stream.options = {"crf": "0", "preset": "ultrafast", "g": "12"}
        for n in range(24):
            small = demo.disc_mask(n)
            frame = np.where(np.kron(small, np.ones((2, 2), bool))[..., None], np.array([240, 150, 40]),
                             np.array([50, 70, 120])).astype(np.int16)
            frame += rng.normal(0, 14, frame.shape).astype(np.int16)
            vf = av.VideoFrame.from_ndarray(np.clip(frame, 0, 255).astype(np.uint8), format="rgb24")
            vf.pts = n
            for p in stream.encode(vf):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    return path


def run_cli(url: str, key: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return live.run_cli(url, key, "roto", *args, cwd=cwd)  # type: ignore[no-any-return]


def test_roto_command_end_to_end(server: str, tmp_path: Path) -> None:
    from reelforge.apps.roto import demo, masks
    from reelforge.apps.roto.frames import FrameSource
    from tests.apps.roto.test_exports import decode_rgba, framecrc

    clip = big_clip(tmp_path / "grain.mp4")
    assert clip.stat().st_size > 6 * 1024 * 1024  # goes up in parts
    key = api_key(server, "cli@example.com")
    x, y = demo.disc_centre(0)
    out = tmp_path / "out"
    # a point outside the video: refused after the session is known (exit 2), and that session is removed
    r = run_cli(server, key, str(clip), "--point", "700,10", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "point 700,10 on frame 0 is outside the 640x360 video" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(server, key, str(clip), "--point", f"{2 * x:.0f},{2 * y:.0f}", "--negative", "5,5@0",
                "--export", "alpha_webm", "--export", "coco", "--export", "greenscreen", "-o", str(out), "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [p["object"] for p in doc["prompts"]] == [1] and doc["prompts"][0]["area"] > 0
    assert "upload grain.mp4" in r.stderr and "job " in r.stderr
    kinds = sorted(e["kind"] for e in doc["exports"])
    assert kinds == ["alpha_webm", "coco", "greenscreen"]
    paths = {e["kind"]: Path(e["path"]) for e in doc["exports"]}
    assert all(p.parent == out and p.stat().st_size == e["size"] for e, p in zip(doc["exports"], paths.values(),
                                                                                   strict=True))
    with FrameSource(clip) as fs:
        pts = list(fs.info.pts)
    coco = json.loads(paths["coco"].read_text())
    first = masks.decode(next(a for a in coco["annotations"] if a["image_id"] == 1)["segmentation"])
    assert first.shape == (360, 640) and first[int(2 * y), int(2 * x)] and not first[5, 5]
    alpha = paths["alpha_webm"]
    assert len(framecrc(alpha)[1]) == len(pts) == 24
    from reelforge.apps.roto.exports import webm_alpha

    a0 = webm_alpha(alpha, 0)
    assert a0 is not None and ((a0 > 127) == first).mean() > 0.97
    assert len(decode_rgba(paths["greenscreen"])) == 24
    # the sessions: the refused run left none behind, this one is there
    from reelforge.client import Client

    with Client(server, api_key=key) as c:
        assert [s.id for s in c.roto.list_sessions().data] == [doc["session_id"]]


def test_demo(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    import httpx

    from reelforge.apps.roto.demo import run_demo

    key = api_key(server, "demo@example.com")
    with httpx.Client(base_url=server, timeout=120, headers={"Authorization": f"Bearer {key}"}) as http:
        assert run_demo(http, tmp_path) == 0
    said = capsys.readouterr().out
    m = re.search(r"mean IoU (\d\.\d+) over 36 frames", said)
    assert m is not None and float(m.group(1)) >= 0.8, said
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert "roto-source.mp4" in names
    assert any(n.endswith(".webm") for n in names) and any(n.endswith(".json") for n in names)
    assert any(n.endswith(".mp4") and "greenscreen" in n for n in names)


def test_client_namespace_both_faces(server: str, tmp_path: Path) -> None:
    """`rf.roto` against the live API: the asyncio face for the whole session, the blocking one for reads."""
    import asyncio

    from reelforge.apps.roto import demo, masks
    from reelforge.client import ApiError, AsyncClient, Client

    clip = demo.make_clip(tmp_path / "disc.mp4")
    key = api_key(server, "client@example.com")
    x, y = demo.disc_centre(0)

    async def run() -> dict[str, Any]:
        async with AsyncClient(server, api_key=key) as rf:
            asset = await rf.assets.upload(clip, "video/mp4")
            s = await rf.roto.create_session(asset.id, name="disc")
            assert (s.width, s.height, s.frame_count, s.state) == (320, 180, 36, "new")
            answer = await rf.roto.prompt(s.id, 0, [(x, y)])
            assert answer.object_created and answer.prompt is not None and answer.prompt.object_id == 1
            assert answer.overlay.content_type == "image/png" and answer.width == 320
            got = masks.decode(answer.masks[0].rle)
            assert got[int(y), int(x)] and answer.masks[0].area == int(got.sum())
            neg = await rf.roto.prompt(s.id, 0, [{"x": 5, "y": 5, "label": 0}], object_id=1)
            assert neg.prompt is not None and neg.prompt.points == [{"x": 5.0, "y": 5.0, "label": 0}]
            other = await rf.roto.add_object(s.id, "spare")
            boxed = await rf.roto.prompt(s.id, 3, box=(200, 10, 300, 80), object_id=other.object_id)
            assert boxed.prompt is not None and boxed.prompt.box == [200.0, 10.0, 300.0, 80.0]
            await rf.roto.delete_prompt(s.id, neg.prompt.id)
            await rf.roto.delete_object(s.id, other.object_id)
            detail = await rf.roto.get_session(s.id)
            assert [o.object_id for o in detail.objects or []] == [1]
            assert [p.frame for p in detail.prompts or []] == [0]
            png = await rf.roto.frame(s.id, 0)
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
            handle = await rf.roto.propagate(s.id, range=(0, 20), exports=["coco", "alpha_webm"])
            job = await handle.wait(120)
            assert job.ok, job.error
            after = await rf.roto.frame_masks(s.id, 12)
            assert after.frame == 12 and after.masks and after.masks[0].source == "propagated"
            return {"session": s.id, "job": job}

    out = asyncio.run(run())
    job = out["job"]
    assert sorted(e["kind"] for e in job.outputs["exports"]) == ["alpha_webm", "coco"]
    with Client(server, api_key=key) as rf:
        page = rf.roto.list_sessions(limit=5)
        assert [s.id for s in page.data] == [out["session"]] and page.next_cursor is None
        # the matte spans the whole clip: the object on frames 0..20, transparent after the out marker
        webm = next(e for e in job.outputs["exports"] if e["kind"] == "alpha_webm")
        path = rf.assets.download(webm["asset_id"], tmp_path / "matte.webm")
        from reelforge.apps.roto.exports import webm_alpha
        from tests.fixtures.videos import count_frames

        assert count_frames(path) == 36
        inside, outside = webm_alpha(path, 20), webm_alpha(path, 30)
        assert inside is not None and (inside > 127).sum() > 1000
        assert outside is not None and not (outside > 127).any()
        detail = rf.roto.get_session(out["session"])
        assert detail.propagation is not None and detail.propagation.job_id == job.id
        assert detail.propagation.range == [0, 20]
        with pytest.raises(ApiError) as e:
            rf.roto.prompt(out["session"], 0, [(1000, 10)], object_id=1)
        assert e.value.status == 422 and e.value.code == "point_outside_frame"
        rf.roto.delete_session(out["session"])
        with pytest.raises(ApiError) as e:
            rf.roto.get_session(out["session"])
        assert e.value.status == 404
