"""`reelforge film render SCRIPT -o film.mp4` against a real API and worker: the film, its subtitles next to it,
portrait aspect; bad arguments exit 2 before anything is sent; the `rf.film` client namespace."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.apps.film.render_env import SCRIPT
from tests.fixtures.videos import ffprobe
from tests.integration import live_server as live
from tests.integration.live_server import api_key, closed_port_url, serve_with_worker


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    """A real API on a socket and an in-process worker."""
    with serve_with_worker(tmp_path, sqlite_url) as url:
        yield url


def run_cli(url: str, key: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return live.run_cli(url, key, "film", "render", *args, cwd=cwd)  # type: ignore[no-any-return]


def test_bad_arguments_exit_2_before_sending(tmp_path: Path) -> None:
    from reelforge.cli.main import app

    script = tmp_path / "storm.fountain"
    script.write_text(SCRIPT)
    runner = CliRunner()
    env = {"REELFORGE_API_KEY": "rf_test"}
    url = closed_port_url()  # nothing listens: any request would be exit 5
    for args, said in ((["--aspect", "4:3"], "--aspect must be one of 16:9, 9:16"),
                       (["--subtitles", "loud"], "--subtitles must be one of"),
                       (["--height", "4000"], "--height must be between 144 and 1080"),
                       (["-o", str(tmp_path)], "is a folder")):
        r = runner.invoke(app, ["film", "render", str(script), *args, "--url", url], env=env)
        assert r.exit_code == 2 and said in r.output, (args, r.output)
    empty = tmp_path / "empty.fountain"
    empty.write_text("  \n")
    r = runner.invoke(app, ["film", "render", str(empty), "--url", url], env=env)
    assert r.exit_code == 2 and "is empty" in r.output
    binary = tmp_path / "x.fountain"
    binary.write_bytes(b"\xff\xfe\x00bad")
    r = runner.invoke(app, ["film", "render", str(binary), "--url", url], env=env)
    assert r.exit_code == 2 and "not UTF-8" in r.output
    r = runner.invoke(app, ["film", "render", str(script), "--url", url], env=env)
    assert r.exit_code == 5, r.output  # valid arguments do reach for the server


def test_film_render_command(server: str, tmp_path: Path) -> None:
    key = api_key(server, "cli@example.com")
    script = tmp_path / "storm.fountain"
    script.write_text(SCRIPT)
    out = tmp_path / "out" / "storm.mp4"
    r = run_cli(server, key, str(script), "--aspect", "9:16", "--height", "144", "-o", str(out), "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["files"]["video"] == str(out) and out.stat().st_size > 0
    assert doc["size"] == [144, 256]
    streams = ffprobe(out, "-show_entries", "stream=codec_type,width,height")["streams"]
    video = next(s for s in streams if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (144, 256)
    assert {s["codec_type"] for s in streams} == {"video", "audio", "subtitle"}
    srt = Path(doc["files"]["en.srt"]).read_text()
    assert "whatever happens" in srt and Path(doc["files"]["en.vtt"]).read_text().startswith("WEBVTT")
    assert "job " in r.stderr  # progress went to stderr
    # the project is there for the next render, through the client namespace
    from reelforge.client import Client

    with Client(server, api_key=key) as c:
        project = c.film.get_project(doc["project_id"])
        assert project.title == "storm" and project.last_render_job_id == doc["job_id"]
        assert project.script == SCRIPT
