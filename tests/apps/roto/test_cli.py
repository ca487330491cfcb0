"""`reelforge roto`: argument checking (exit 2 with a message, no traceback, before anything is sent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from reelforge.apps.roto import cli as rc
from tests.integration.live_server import closed_port_url


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
