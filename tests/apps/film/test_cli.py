"""`reelforge film render SCRIPT -o film.mp4` against a real API and worker: the film, its subtitles next to it,
portrait aspect; bad arguments exit 2 before anything is sent; the `rf.film` client namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.apps.film.render_env import SCRIPT
from tests.fixtures.videos import ffprobe
from tests.integration.live_server import closed_port_url

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    """A real API on a socket and an in-process worker."""
    from reelforge.container import Container
    from reelforge.runtime.worker import Worker
    from tests.integration.live_server import bind_socket, live_settings, serve

    sock = bind_socket()
    c = Container(live_settings(tmp_path, sqlite_url, sock))
    w = Worker(c, concurrency=2)
    w.start()
    try:
        with serve(c, sock) as url:
            yield url
    finally:
        w.stop(grace_s=5)
        c.close()
        sock.close()


def api_key(url: str, email: str) -> str:
    from reelforge.client import Client

    c = Client(url, api_key="")
    c.auth.register(email, "correct horse battery")
    c.auth.login(email, "correct horse battery")
    return c.api_keys.create("film").key or ""


def run_cli(url: str, key: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REELFORGE_", "XDG_"))}
    env.update({"HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd / "config"), "XDG_STATE_HOME": str(cwd / "state"),
                "REELFORGE_API_KEY": key, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO_ROOT)})
    return subprocess.run([sys.executable, "-m", "reelforge", "film", "render", *args, "--url", url], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


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
