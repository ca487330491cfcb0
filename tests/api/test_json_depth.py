"""Deeply nested JSON: refused at submit with 422 input_too_deep, never a 500, and nothing stored.

Job inputs are stored and served back on every read; pydantic's serializer gives up near 255 levels, which once
made a 256-level body a 500 at submit and a 254-level one a job that answered 500 on every read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.domain.types import JSON_DEPTH_CEILING, json_depth
from tests.api.test_jobs import assert_problem
from tests.conftest import UserHandle, make_settings, register
from tests.fixtures.hashing import fast_password_hashing  # noqa: F401


def nest(levels: int) -> Any:
    """A JSON value `levels` containers deep, dicts and lists in turn."""
    value: Any = {}
    for i in range(levels - 1):
        value = {"a": value} if i % 2 else [value]
    return value


def job_body(body_levels: int) -> str:
    """A /v1/jobs body that nests `body_levels` deep in all (the body and input objects are two of them)."""
    return json.dumps({"kind": "system.noop", "input": {"echo": nest(body_levels - 2)}})


def batch_body(body_levels: int) -> str:
    """A /v1/jobs/batch body, one shallow job and one nesting `body_levels` deep in all."""
    deep = {"kind": "system.noop", "input": {"echo": nest(body_levels - 4)}}
    return json.dumps({"jobs": [{"kind": "system.noop", "input": {"echo": 1}}, deep]})


def post(user: UserHandle, path: str, raw: str) -> Any:
    return user.client.post(path, content=raw, headers={**user.headers, "Content-Type": "application/json"})


def assert_nothing_stored(user: UserHandle) -> None:
    assert user.get("/v1/jobs").json()["data"] == []
    credits = user.get("/v1/credits").json()
    assert credits["balance"] == 100 and len(credits["ledger"]) == 1


def test_json_depth_counts_containers() -> None:
    assert [json_depth(v, 10) for v in (1, "x", None, {}, [], {"a": []}, [[1], {"b": {"c": 2}}])] == [
        0, 0, 0, 1, 1, 2, 3]
    assert json_depth(nest(5), 10) == 5
    # It stops counting past the limit, and any depth is safe (no recursion).
    assert json_depth(nest(100_000), 10) == 11


@pytest.mark.parametrize("levels", [256, 254])
def test_deep_job_input_is_refused(client: Any, alice: UserHandle, levels: int) -> None:
    body = assert_problem(post(alice, "/v1/jobs", job_body(levels)), 422, "input_too_deep")
    assert body["errors"][0]["field"] == "input"
    body = assert_problem(post(alice, "/v1/jobs/batch", batch_body(levels)), 422, "input_too_deep")
    assert body["errors"]
    assert_nothing_stored(alice)


def test_input_deeper_than_the_setting_is_refused(client: Any, alice: UserHandle) -> None:
    """Below the request ceiling, the service's limit (max_json_depth, 32 by default) decides."""
    limit = client.app.state.container.settings.max_json_depth
    assert limit == 32 and limit < JSON_DEPTH_CEILING
    too_deep = {"kind": "system.noop", "input": {"echo": nest(limit)}}  # the input object is one more level
    body = assert_problem(alice.post("/v1/jobs", json=too_deep), 422, "input_too_deep")
    assert body["field"] == "input" and body["max_depth"] == limit
    body = assert_problem(alice.post("/v1/jobs/batch", json={"jobs": [{"kind": "system.noop"}, too_deep]}),
                          422, "input_too_deep")
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, "input_too_deep")]
    assert_nothing_stored(alice)

    # At the limit: accepted, and read back as it was sent.
    deepest = {"kind": "system.noop", "input": {"echo": nest(limit - 1)}}
    r = alice.post("/v1/jobs", json=deepest)
    assert r.status_code == 202, r.text
    read = alice.get(f"/v1/jobs/{r.json()['id']}")
    assert read.status_code == 200 and read.json()["input"] == deepest["input"]
    assert alice.post("/v1/jobs/batch", json={"jobs": [deepest]}).status_code == 202
    assert len(alice.get("/v1/jobs").json()["data"]) == 2


@pytest.fixture
def shallow_client(tmp_path: Path, db_url: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, db_url, max_json_depth=4))
    with TestClient(create_app(container=c)) as tc:
        yield tc
    c.close()


def test_the_limit_is_a_setting(shallow_client: Any) -> None:
    user = register(shallow_client, "deep@example.com")
    assert user.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": nest(3)}}).status_code == 202
    body = assert_problem(user.post("/v1/jobs", json={"kind": "system.noop", "input": {"echo": nest(4)}}),
                          422, "input_too_deep")
    assert body["max_depth"] == 4


def test_deep_values_in_any_request_body_are_refused(client: Any, alice: UserHandle) -> None:
    """The request ceiling holds on every route, also for fields that are not stored (no 500 anywhere)."""
    deep = nest(300)
    for path, payload in [("/v1/jobs/batch", {"jobs": [{"kind": "system.noop", "bogus": deep}]}),
                          ("/v1/webhooks", {"url": "https://hooks.example.invalid/x", "event_types": deep}),
                          ("/v1/api-keys", {"name": deep})]:
        r = alice.post(path, json=payload)
        assert r.status_code == 422, (path, r.text)
    assert_problem(alice.post("/v1/jobs/batch", json={"jobs": [{"kind": "system.noop", "bogus": deep}]}),
                   422, "input_too_deep")
