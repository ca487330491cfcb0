"""/v1/jobs (submit, wait, idempotency, list, get, cancel, history, SSE events), /v1/pipelines, /v1/models."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import UserHandle
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401

PROBLEM = "application/problem+json"
NOOP = {"kind": "system.noop", "input": {"echo": {"x": 1}}}


def image(**over: Any) -> dict[str, Any]:
    data = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2, "seed": 7, "num_images": 1,
            "model": "tiny-sd"}
    data.update(over)
    return {"kind": "image.generate", "input": {k: v for k, v in data.items() if v is not ...}}


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def read_sse(response: Any) -> list[tuple[str, Any]]:
    """Parse a text/event-stream body into (event, data) pairs, stopping after `end`."""
    events: list[tuple[str, Any]] = []
    name, data = None, []
    for line in response.iter_lines():
        if line == "":
            if name is not None:
                events.append((name, json.loads("\n".join(data)) if data else None))
                if name == "end":
                    break
            name, data = None, []
        elif line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line.startswith(":"):
            events.append(("comment", line[1:].strip()))
    return events


# --- submit ----------------------------------------------------------------------------------------
def test_submit_noop_queues_job(client: Any, alice: UserHandle) -> None:
    r = alice.post("/v1/jobs", json=NOOP)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert "idempotent-replayed" not in r.headers
    assert job["status"] == "queued" and job["kind"] == "system.noop"
    assert job["input"] == {"echo": {"x": 1}} and job["outputs"] is None and job["error"] is None
    assert job["credits"] == 0 and job["credits_state"] == "none"
    assert job["progress"] == {"fraction": 0.0, "message": ""}
    assert job["created_at"].endswith("Z")
    assert alice.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]


def test_submit_wait_returns_finished_job(client: Any, alice: UserHandle, worker: Any) -> None:
    r = alice.post("/v1/jobs", json=NOOP, params={"wait": 20})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded" and job["outputs"] == {"echo": {"x": 1}}
    assert job["progress"]["fraction"] == 1.0 and job["attempt"] == 1
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert alice.get(f"/v1/jobs/{job['id']}").json() == job


def test_submit_wait_times_out_with_202(client: Any, alice: UserHandle) -> None:
    r = alice.post("/v1/jobs", json=NOOP, params={"wait": 0.3})
    assert r.status_code == 202 and r.json()["status"] == "queued"


def test_submit_wait_out_of_range(client: Any, alice: UserHandle) -> None:
    for wait in ["-1", "61", "soon"]:
        body = assert_problem(alice.post("/v1/jobs", json=NOOP, params={"wait": wait}), 422, "validation_error")
        assert body["errors"][0]["field"] == "wait"
    assert alice.get("/v1/jobs").json()["data"] == []


def test_idempotency_key(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    h = {"Idempotency-Key": "order-42"}
    first = alice.post("/v1/jobs", json=NOOP, headers=h)
    assert first.status_code == 202
    again = alice.post("/v1/jobs", json=NOOP, headers=h)
    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["idempotency_key"] == "order-42"
    other = alice.post("/v1/jobs", json={**NOOP, "input": {"echo": "different"}}, headers=h)
    body = assert_problem(other, 409, "idempotency_key_reused")
    assert body["job_id"] == first.json()["id"]
    # Keys are per account: bob's same key is his own job.
    theirs = bob.post("/v1/jobs", json=NOOP, headers=h)
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]
    jobs = alice.get("/v1/jobs").json()["data"]
    assert [j["id"] for j in jobs] == [first.json()["id"]]
    assert_problem(alice.post("/v1/jobs", json=NOOP, headers={"Idempotency-Key": "k" * 256}), 422,
                   "validation_error")


def test_unknown_kind(client: Any, alice: UserHandle) -> None:
    body = assert_problem(alice.post("/v1/jobs", json={"kind": "video.teleport", "input": {}}), 422, "unknown_kind")
    assert "system.noop" in body["detail"] and body["field"] == "kind"


BAD_IMAGE_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"width": 65}, "width"),
    ({"width": 32}, "width"),
    ({"height": 4096}, "height"),
    ({"steps": 0}, "steps"),
    ({"steps": 101}, "steps"),
    ({"num_images": 5}, "num_images"),
    ({"num_images": 0}, "num_images"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": ...}, "prompt"),
    ({"model": ...}, "model"),
    ({"guidance_scale": -1}, "guidance_scale"),
    ({"seed": -5}, "seed"),
    ({"width": "wide"}, "width"),
    ({"sampler": "euler"}, "sampler"),
]


def test_image_generate_bad_input(client: Any, alice: UserHandle) -> None:
    for over, field in BAD_IMAGE_INPUTS:
        body = assert_problem(alice.post("/v1/jobs", json=image(**over)), 422, "validation_error")
        assert body["errors"][0]["field"] == field, (over, body)
        assert field in body["detail"], (over, body)
    # Nothing was queued and nothing was reserved.
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == 100


def test_image_generate_model_checks(client: Any, alice: UserHandle) -> None:
    body = assert_problem(alice.post("/v1/jobs", json=image(model="dall-e-9")), 422, "unknown_model")
    assert "tiny-sd" in body["detail"] and body["field"] == "model"
    body = assert_problem(alice.post("/v1/jobs", json=image(model="sd15")), 422, "model_unavailable")
    assert body["model"] == "sd15" and body["detail"]
    assert alice.get("/v1/jobs").json()["data"] == []
    assert alice.get("/v1/credits").json()["balance"] == 100


BAD_ENVELOPES: list[Any] = [
    {"kind": "system.noop", "input": {}, "owner_id": "someone"},
    {"kind": "system.noop", "input": {"echo": 1, "extra": True}},
    {"kind": "", "input": {}},
    {"kind": "system.noop", "input": []},
    {"kind": "system.noop", "priority": 101},
    {"input": {}},
    ["system.noop"],
]


def test_submit_rejects_bad_envelope(client: Any, alice: UserHandle) -> None:
    for payload in BAD_ENVELOPES:
        assert_problem(alice.post("/v1/jobs", json=payload), 422, "validation_error")
    r = alice.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_problem(r, 422, "validation_error")
    assert alice.get("/v1/jobs").json()["data"] == []


# --- list / get --------------------------------------------------------------------------------------
def test_list_filters_and_cursor_pagination(client: Any, alice: UserHandle) -> None:
    ids = [alice.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": i}}).json()["id"] for i in range(5)]
    img = alice.post("/v1/jobs", json=image()).json()["id"]
    alice.post(f"/v1/jobs/{ids[0]}/cancel")

    everything = alice.get("/v1/jobs").json()
    assert everything["next_cursor"] is None
    listed = everything["data"]
    assert {j["id"] for j in listed} == {img, *ids}
    # Newest first (jobs created in the same millisecond tie-break on id, so compare the keys, not our order).
    assert [(j["created_at"], j["id"]) for j in listed] == sorted(((j["created_at"], j["id"]) for j in listed),
                                                                  reverse=True)
    noops = [j["id"] for j in listed if j["kind"] == "system.noop"]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "kind": "system.noop"}
        if cursor:
            params["cursor"] = cursor
        page = alice.get("/v1/jobs", params=params).json()
        pages += 1
        assert len(page["data"]) <= 2
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and seen == noops

    assert [j["id"] for j in alice.get("/v1/jobs", params={"kind": "image.generate"}).json()["data"]] == [img]
    cancelled = alice.get("/v1/jobs", params={"status": "cancelled"}).json()["data"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    queued = alice.get("/v1/jobs", params={"status": "queued", "kind": "system.noop"}).json()["data"]
    assert {j["id"] for j in queued} == set(ids[1:])


def test_list_bad_query(client: Any, alice: UserHandle) -> None:
    for params in [{"status": "sleeping"}, {"limit": 0}, {"limit": 201}, {"kind": "k" * 65}]:
        assert_problem(alice.get("/v1/jobs", params=params), 422, "validation_error")
    for cursor in ["not-a-cursor", "abc:def", "c" * 201]:
        code = "validation_error" if len(cursor) > 200 else "invalid_cursor"
        assert_problem(alice.get("/v1/jobs", params={"cursor": cursor}), 422, code)


def test_get_unknown_job(client: Any, alice: UserHandle) -> None:
    assert_problem(alice.get("/v1/jobs/nope"), 404, "job_not_found")
    assert_problem(alice.get("/v1/jobs/nope/history"), 404, "job_not_found")
    assert_problem(alice.get("/v1/jobs/nope/events"), 404, "job_not_found")
    assert_problem(alice.post("/v1/jobs/nope/cancel"), 404, "job_not_found")


def test_other_users_job_is_not_found(client: Any, alice: UserHandle, bob: UserHandle) -> None:
    job_id = alice.post("/v1/jobs", json=NOOP).json()["id"]
    assert_problem(bob.get(f"/v1/jobs/{job_id}"), 404, "job_not_found")
    assert_problem(bob.get(f"/v1/jobs/{job_id}/history"), 404, "job_not_found")
    assert_problem(bob.get(f"/v1/jobs/{job_id}/events"), 404, "job_not_found")
    assert_problem(bob.post(f"/v1/jobs/{job_id}/cancel"), 404, "job_not_found")
    assert bob.get("/v1/jobs").json()["data"] == []
    assert alice.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


# --- cancel ------------------------------------------------------------------------------------------
def test_cancel_queued_then_finished(client: Any, alice: UserHandle) -> None:
    job_id = alice.post("/v1/jobs", json=NOOP).json()["id"]
    r = alice.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "cancelled" and job["error"]["code"] == "cancelled" and job["finished_at"]
    body = assert_problem(alice.post(f"/v1/jobs/{job_id}/cancel"), 409, "job_finished")
    assert body["status"] == 409 and body["job_status"] == "cancelled"
    types = [e["type"] for e in alice.get(f"/v1/jobs/{job_id}/history").json()["events"]]
    assert types == ["JobQueued", "JobCancelled"]


def test_cancel_succeeded_job_is_conflict(client: Any, alice: UserHandle, worker: Any) -> None:
    job = alice.post("/v1/jobs", json=NOOP, params={"wait": 20}).json()
    assert job["status"] == "succeeded"
    assert_problem(alice.post(f"/v1/jobs/{job['id']}/cancel"), 409, "job_finished")


# --- history and events ----------------------------------------------------------------------------
def test_history_after_cursor(client: Any, alice: UserHandle, worker: Any) -> None:
    job = alice.post("/v1/jobs", json=NOOP, params={"wait": 20}).json()
    hist = alice.get(f"/v1/jobs/{job['id']}/history").json()
    assert hist["job_id"] == job["id"] and hist["status"] == "succeeded"
    events = hist["events"]
    assert events[0]["type"] == "JobQueued" and events[-1]["type"] == "JobSucceeded"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    later = alice.get(f"/v1/jobs/{job['id']}/history", params={"after": events[1]["id"]}).json()["events"]
    assert later == events[2:]
    assert_problem(alice.get(f"/v1/jobs/{job['id']}/history", params={"after": -1}), 422, "validation_error")


def test_events_stream_until_end(client: Any, alice: UserHandle, worker: Any) -> None:
    job_id = alice.post("/v1/jobs", json=NOOP).json()["id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=alice.headers, params={"timeout": 30}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        events = read_sse(r)
    names = [n for n, _ in events]
    assert names[-1] == "end", events
    end = events[-1][1]
    assert end["id"] == job_id and end["status"] == "succeeded" and end["outputs"] == {"echo": {"x": 1}}
    assert "status" in names and "progress" in names
    history = [d["type"] for n, d in events if n == "history"]
    assert history[0] == "JobQueued" and history[-1] == "JobSucceeded"
    assert [d["status"] for n, d in events if n == "status"][-1] == "succeeded"


def test_events_stream_of_finished_job_ends_at_once(client: Any, alice: UserHandle) -> None:
    job_id = alice.post("/v1/jobs", json=NOOP).json()["id"]
    alice.post(f"/v1/jobs/{job_id}/cancel")
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=alice.headers) as r:
        events = read_sse(r)
    assert events[-1][0] == "end" and events[-1][1]["status"] == "cancelled"


def test_events_stream_times_out(client: Any, alice: UserHandle) -> None:
    job_id = alice.post("/v1/jobs", json=NOOP).json()["id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=alice.headers, params={"timeout": 1}) as r:
        events = read_sse(r)
    assert ("comment", "timeout") in events
    assert "end" not in [n for n, _ in events]
    assert_problem(alice.get(f"/v1/jobs/{job_id}/events", params={"timeout": 0}), 422, "validation_error")


# --- pipelines and models ------------------------------------------------------------------------------
def test_pipelines_list_and_asl(client: Any, alice: UserHandle) -> None:
    data = alice.get("/v1/pipelines").json()["data"]
    kinds = {p["kind"] for p in data}
    assert {"image.generate", "system.noop"} <= kinds
    r = alice.get("/v1/pipelines/image.generate")
    assert r.status_code == 200
    p = r.json()
    assert p["version"] >= 1 and p["description"]
    asl = p["asl"]
    assert asl["StartAt"] == "validate"
    assert set(asl["States"]) >= {"validate", "generate", "store"}
    assert asl["States"]["validate"]["Type"] == "Task" and asl["States"]["validate"]["Next"] == "generate"
    assert asl["States"]["store"].get("End") is True
    assert {"prompt", "width", "steps", "model"} <= set(p["input_schema"]["properties"])
    assert [s["name"] for s in p["steps"]] == ["validate", "generate", "store"]
    assert next(s for s in p["steps"] if s["name"] == "generate")["resources"]["gpu"] == 1
    assert_problem(alice.get("/v1/pipelines/no.such.kind"), 404, "unknown_kind")


def test_models(client: Any, alice: UserHandle) -> None:
    data = alice.get("/v1/models").json()["data"]
    by_name = {m["name"]: m for m in data if m["task"] == "image.generate"}
    tiny = by_name["tiny-sd"]
    assert tiny["available"] is True and tiny["test_model"] is True and tiny["reason"] is None
    sd15 = by_name["sd15"]
    assert sd15["available"] is False and sd15["reason"] and sd15["test_model"] is False
    only = alice.get("/v1/models", params={"task": "image.generate"}).json()["data"]
    assert {m["task"] for m in only} == {"image.generate"}
    assert alice.get("/v1/models", params={"task": "nothing.here"}).json()["data"] == []


def test_job_routes_require_auth(client: Any) -> None:
    for method, path in [
        ("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/x"), ("POST", "/v1/jobs/x/cancel"),
        ("GET", "/v1/jobs/x/history"), ("GET", "/v1/jobs/x/events"), ("GET", "/v1/pipelines"),
        ("GET", "/v1/pipelines/system.noop"), ("GET", "/v1/models"),
    ]:
        r = client.request(method, path, json=NOOP if method == "POST" else None)
        assert_problem(r, 401, "missing_credentials")
