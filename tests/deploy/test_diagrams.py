"""The diagrams draw what the description holds (rendered with Graphviz into a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import need, need_dot


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need("diagrams")
    need_dot()
    from reelforge_deploy import diagrams
    from reelforge_deploy.description import describe

    d = describe(diagrams.default_config())
    out = tmp_path_factory.mktemp("diagrams")
    written = diagrams.render_all(d, out / "docs", out / "img" / "sr.png", outformat=["png", "dot"])
    sources = {p.name: p.with_suffix(".dot").read_text() for p in written}
    return {"d": d, "written": written, "dot": sources}


def _labels(dot: str) -> str:
    # Graphviz escapes newlines in labels; compare on single spaces.
    return re.sub(r"\s+", " ", dot.replace("\\n", " "))


def test_every_component_and_flow_is_drawn(drawn: dict[str, Any]) -> None:
    from reelforge_deploy.diagrams import _wrap

    d = drawn["d"]
    dot = drawn["dot"]["architecture.png"]
    text = _labels(dot)
    for c in d.components:
        assert _labels(_wrap(c.label)) in text, c.id
    edges = dot.count(" -> ")
    assert edges >= len(d.flows)
    for f in d.flows:
        if f.label:
            assert _labels(f.label) in text, f


def test_one_picture_per_application_with_its_job_kinds_and_resource_class(drawn: dict[str, Any]) -> None:
    d = drawn["d"]
    assert {a.name for a in d.applications} >= {"imagegen", "upscale", "roto", "mobs", "film"}
    for app in d.applications:
        text = _labels(drawn["dot"][f"app-{app.name}.png"])
        for k in app.job_kinds:
            assert f"{k.kind} [{k.resource_class}]" in text
        for name, rc in app.calls:
            assert f"{name} [{rc}]" in text
        assert "Legend" in text


def test_super_resolution_picture_shows_the_design(drawn: dict[str, Any]) -> None:
    text = _labels(drawn["dot"]["sr.png"])
    for needle in ("S3 only", "sources", "frames", "finals", "STANDARD_IA", "GLACIER_IR", "lifecycle rules",
                   "presigned", "multipart", "local cache", "Spot", "scale to 0", "no standing endpoint",
                   "least-privilege", "S3 gateway endpoint", "TLS", "SSE-KMS", "KMS", "dashboard", "alarms", "SNS",
                   "CloudTrail", "Legend", "video.upscale"):
        assert needle in text, needle


def test_pictures_are_pngs(drawn: dict[str, Any]) -> None:
    for p in drawn["written"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
