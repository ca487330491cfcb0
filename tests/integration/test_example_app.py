"""Adding an application means adding a package and nothing else.

An application that lives outside reelforge's tree (tests/fixtures/example_app/rf_greeter) is installed the way
pip installs a distribution: a `.dist-info` folder whose entry_points.txt names its manifest in the
`reelforge.apps` group. A fresh process then gets its settings section, table, service, pipeline, route, console
page, static file, navigation entry, dashboard card and quick action, tick, interactive call, event type and CLI
command, with no change to reelforge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "example_app"


def _install(site: Path) -> None:
    dist = site / "rf_greeter-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rf-greeter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reelforge.apps]\ngreeter = rf_greeter:APP\n")


def _drive(tmp_path: Path, site: Path | None) -> dict[str, object]:
    paths = [str(EXAMPLE)] + ([str(site)] if site else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
           "REELFORGE_GREETER__GREETING": "ahoy", "REELFORGE_DATA_DIR": str(tmp_path / "var")}
    proc = subprocess.run([sys.executable, str(EXAMPLE / "drive.py"), str(tmp_path / "var")], env=env,
                          capture_output=True, text=True, timeout=240)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")), None)
    if line is None:
        return {"error": proc.stderr[-4000:], "rc": proc.returncode}
    return dict(json.loads(line[len("REPORT "):]))


def test_an_installed_package_adds_an_application(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install(site)
    r = _drive(tmp_path, site)
    assert "error" not in r, r
    assert r["greeting_setting"] == "ahoy"  # settings section from REELFORGE_GREETER__GREETING
    assert "greeter" in r["apps"] and {"imagegen", "upscale", "mobs"} <= set(r["apps"])
    assert r["table"] == 0  # its own migration ran
    assert "greeter.tick" in r["ticks"]
    assert r["hello"] == [200, "ahoy"] and r["hello_anonymous"] == 401 and r["openapi"] is True
    assert r["page"] == [200, True, True, True] and r["nav_everywhere"] is True and r["script"] == 200
    assert r["dashboard"] == [True, True, True, 200] and r["reuse"] is True  # dashboard card, quick action
    assert r["pipeline_listed"] is True
    assert r["bad_input"][0] == 422
    assert r["event_type"][0] == 201, r["event_type"]
    assert r["job"] == ["succeeded", "ahoy, ada"] and r["greetings_stored"] == 1
    assert r["ticked"] is True
    assert r["call"] == "ahoy, lin"  # its interactive call, run by the worker
    assert r["cli"] == [0, "ahoy, grace"]


def test_without_the_package_nothing_of_it_exists(tmp_path: Path) -> None:
    r = _drive(tmp_path, None)
    # drive.py fails at the first use of the greeter: the platform itself knows nothing of it.
    assert "error" in r and "greeter" in str(r["error"])


@pytest.mark.parametrize("name", ["Bad-Name", "jobs", "1abc"])
def test_malformed_manifests_are_refused(name: str) -> None:
    from reelforge.applications import AppError, AppManifest, _validate

    with pytest.raises(AppError):
        _validate([AppManifest(name=name, title="x")])


def test_two_applications_may_not_share_a_name() -> None:
    from reelforge.applications import AppError, AppManifest, _validate

    with pytest.raises(AppError, match="two installed"):
        _validate([AppManifest(name="same", title="a"), AppManifest(name="same", title="b")])


@pytest.mark.parametrize("href", ["https://evil.example/x", "//evil.example/x", "generate", "/\\evil.example"])
def test_console_links_must_stay_on_the_site(href: str) -> None:
    from reelforge.applications import Action, AppError, AppManifest, _validate

    with pytest.raises(AppError, match="paths on this site"):
        _validate([AppManifest(name="app", title="a", actions=(Action(href, "Go"),))])
    with pytest.raises(AppError, match="paths on this site"):
        _validate([AppManifest(name="app", title="a", reuse={"app.run": href})])


def test_a_reuse_page_takes_no_query_of_its_own() -> None:
    from reelforge.applications import AppError, AppManifest, _validate

    with pytest.raises(AppError):
        _validate([AppManifest(name="app", title="a", reuse={"app.run": "/page?mode=x"})])
    assert _validate([AppManifest(name="app", title="a", reuse={"app.run": "/page"})])
