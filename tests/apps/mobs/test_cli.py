"""`reelforge videos ...` and `reelforge mobs ...`: argument checks (exit 2 before anything is sent) and a real
run against a live API and worker with the local models: submit (upload, follow the analysis), show, feed,
similar, mobs list and show, with --json and the CLI's exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from reelforge.apps.mobs import cli as mc
from tests.integration import live_server as live
from tests.integration.live_server import api_key, closed_port_url, serve_with_worker


def app() -> typer.Typer:
    a = typer.Typer()
    mc.register(a, {})
    return a


@pytest.mark.parametrize("args,message", [
    (["videos", "feed", "--order", "worst"], "--order must be new or best"),
    (["videos", "similar", "abc", "-k", "0"], "Invalid value"),
    (["videos", "similar", "abc", "--min-similarity", "3"], "Invalid value"),
])
def test_bad_arguments_exit_2_before_sending(args: list[str], message: str) -> None:
    r = CliRunner().invoke(app(), [*args, "--url", closed_port_url()])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_submit_refuses_files_that_are_not_videos(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    r = CliRunner().invoke(app(), ["videos", "submit", str(text), "--url", closed_port_url()])
    assert r.exit_code == 2 and "not a video file type" in r.output
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    r = CliRunner().invoke(app(), ["videos", "submit", str(video), "--url", closed_port_url()],
                           env={"REELFORGE_API_KEY": "rf_test"})
    assert r.exit_code == 5, r.output  # valid arguments reach for the server: unreachable


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    with serve_with_worker(tmp_path, sqlite_url) as url:
        yield url


def test_videos_and_mobs_commands_end_to_end(server: str, tmp_path: Path) -> None:
    from tests.fixtures.mob_corpus import TRENDS, make_trend_video, tts_available

    reason = tts_available()
    if reason:
        pytest.skip(reason)
    from reelforge.apps.mobs.models import video_understanding_adapters
    from reelforge.config import Settings

    part, emb = video_understanding_adapters(Settings(data_dir=tmp_path / "probe"))[:2]
    missing = part.availability().reason or emb.availability().reason
    if missing:
        pytest.skip(f"local video models unavailable: {missing}")
    clip = make_trend_video(tmp_path / "coffee.mp4", TRENDS[1], 0, seconds=2.0).path
    second = make_trend_video(tmp_path / "coffee2.mp4", TRENDS[1], 1, seconds=2.0).path
    key = api_key(server, "cli@example.com")

    def run(*args: str) -> Any:
        return live.run_cli(server, key, *args, cwd=tmp_path)

    r = run("videos", "submit", str(clip), "--caption", "morning #coffeeart", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    video = doc["video"]
    assert doc["job_status"] == "succeeded" and video["status"] == "validated", doc
    assert "upload coffee.mp4" in r.stderr
    r = run("videos", "submit", str(second), "--caption", "#coffeeart take two")
    assert r.returncode == 0, r.stderr
    assert "status     validated" in r.stdout and "hashtags" in r.stdout  # the score's reasons are shown

    shown = json.loads(run("videos", "show", video["id"], "--json").stdout)
    assert shown["id"] == video["id"] and shown["score"] == shown["scores"]["score"]
    feed = json.loads(run("videos", "feed", "--order", "best", "--json").stdout)
    assert video["id"] in {v["id"] for v in feed["data"]}
    sim = json.loads(run("videos", "similar", video["id"], "-k", "5", "--json").stdout)
    assert sim["fewer_than_k"] is True and len(sim["data"]) == 1
    mobs = json.loads(run("mobs", "list", "--json").stdout)
    assert len(mobs) == 1 and mobs[0]["count"] == 2 and mobs[0]["name"].startswith("#coffeeart")
    text = run("mobs", "show", mobs[0]["id"])
    assert text.returncode == 0 and mobs[0]["name"] in text.stdout and video["id"] in text.stdout

    missing = run("videos", "show", "0" * 32)
    assert missing.returncode == 3 and "video_not_found" in missing.stderr
    r = live.run_cli(server, "", "mobs", "list", cwd=tmp_path)
    assert r.returncode == 4, r.stderr
