from __future__ import annotations

from typing import Any

from tests.conftest import UserHandle, wait_for


def test_noop_job_runs_end_to_end(client: Any, alice: UserHandle, worker: Any) -> None:
    r = alice.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": {"x": 1}}})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = wait_for(lambda: (j := alice.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and j)
    assert job["outputs"] == {"echo": {"x": 1}}
    hist = alice.get(f"/v1/jobs/{job_id}/history").json()
    types = [e["type"] for e in hist["events"]]
    assert types[0] == "JobQueued" and "JobStarted" in types and types[-1] == "JobSucceeded"
    assert "TaskSucceeded" in types


def test_image_generate_tiny_sd(client: Any, alice: UserHandle, worker: Any) -> None:
    body = {"kind": "image.generate", "input": {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2,
                                                 "guidance_scale": 5.0, "seed": 7, "num_images": 1, "model": "tiny-sd"}}
    r = alice.post("/v1/jobs", json=body, params={"wait": 60})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    img = job["outputs"]["images"][0]
    asset = alice.get(f"/v1/assets/{img['asset_id']}").json()
    assert asset["content_type"] == "image/png"
    data = client.get(asset["download"]["url"].replace("http://testserver", "")).content
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
