"""`reelforge.client` against the API it talks to, without a server.

1. Every record type reads only fields that the matching response schema in the app's OpenAPI document has,
   with a compatible JSON type, and has every field the schema requires.
2. The blocking and the asyncio client send identical requests for every call (both run the same operation
   descriptions; this checks that nothing face-specific changes what goes on the wire).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import inspect
import json
import types
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelforge.client import AsyncClient, Client, records
from reelforge.client.core import ENTRY_POINT_GROUP, Namespace, Streamed, call
from reelforge.client.namespaces import JobHandle, Resources
from reelforge.client.records import Record

# --- 1. records and schemas -----------------------------------------------------------------------------------
# record class name -> the component schema it reads, or (method, path, status) for a route whose answer has
# no component of its own.
SCHEMAS: dict[str, str | tuple[str, str, str]] = {
    "User": "UserPublic",
    "Registration": "RegistrationPublic",
    "TokenPair": "TokenPublic",
    "ApiKey": "ApiKeyCreated",
    "JobError": "JobError",
    "JobProgress": "JobProgress",
    "Job": "JobPublic",
    "JobPage": "JobsPublic",
    "JobEvent": "JobEventPublic",
    "JobHistory": "JobHistoryPublic",
    "Pipeline": "PipelinePublic",
    "Model": "ModelPublic",
    "SignedRequest": "SignedRequestPublic",
    "UploadPart": "UploadPart",
    "Upload": "UploadPublic",
    "Asset": "AssetPublic",
    "CreditEntry": "CreditEntryPublic",
    "Credits": "CreditsPublic",
    "Webhook": "WebhookCreated",
    "WebhookTest": ("post", "/v1/webhooks/{hook_id}/test", "202"),
    "Delivery": "DeliveryPublic",
    # video understanding (reelforge.apps.mobs.client)
    "Video": "VideoPublic",
    "VideoDetail": "VideoDetail",
    "VideoPage": "VideosPublic",
    "UploadTarget": "UploadTarget",
    "VideoTicket": "SubmitPublic",
    "VideoCompleted": "CompletePublic",
    "Mob": "MobPublic",
    "MobDetail": "MobDetail",
    "SimilarHit": "SimilarHit",
    "Similar": "SimilarPublic",
    "Validation": "ValidationPublic",
    "VideoHistory": "HistoryPublic",
    # rotoscoping (reelforge.apps.roto.client)
    "RotoSession": "reelforge__apps__roto__routes__SessionPublic",  # the core has a SessionPublic too
    "RotoSessionDetail": "SessionDetail",
    "RotoSessionPage": "SessionsPublic",
    "RotoObject": "ObjectPublic",
    "RotoPrompt": "PromptPublic",
    "RotoMask": "MaskPublic",
    "Overlay": "OverlayPublic",
    "FrameMasks": "FrameMasksPublic",
    "Propagation": "PropagationPublic",
    # film studio (reelforge.apps.film.client)
    "FilmProject": "ProjectDetail",
}
# Fields a record has beyond what one schema of the family shows (the secret in a create answer).
SCHEMA_ONLY_ON_CREATE = {("ApiKey", "key"), ("Webhook", "secret")}


def _extension_modules() -> list[types.ModuleType]:
    return [importlib.import_module(ep.value.split(":")[0]) for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _record_types() -> dict[str, type[Record]]:
    found: dict[str, type[Record]] = {}
    for module in [records, *_extension_modules()]:
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Record) and obj is not Record and obj.__module__ == module.__name__:
                found[name] = obj
    return found


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from reelforge.api.app import create_app
    from reelforge.config import Settings

    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi"))).openapi()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _schema_of(doc: dict[str, Any], target: str | tuple[str, str, str]) -> dict[str, Any]:
    if isinstance(target, str):
        return doc["components"]["schemas"][target]
    method, path, status = target
    return _resolve(doc, doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"])


def _json_types(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema allows ("any" for an unconstrained one)."""
    schema = _resolve(doc, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return set().union(*(_json_types(doc, s) for s in schema.get("anyOf", schema.get("oneOf", []))))
    if "type" in schema:
        return {schema["type"]} if isinstance(schema["type"], str) else set(schema["type"])
    if "properties" in schema:
        return {"object"}
    return {"any"}


def _accepts(hint: Any) -> set[str]:
    """The JSON types a record field's annotation takes."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_accepts(a) for a in typing.get_args(hint)))
    if hint is Any:
        return {"any", "string", "integer", "number", "boolean", "object", "array", "null"}
    base = origin or hint
    if base is type(None):
        return {"null"}
    if base is bool:
        return {"boolean"}
    if base is int:
        return {"integer"}
    if base is float:
        return {"number", "integer"}
    if base is str:
        return {"string"}
    if base in (list, tuple):
        return {"array"}
    if base is dict or (inspect.isclass(base) and issubclass(base, Record)):
        return {"object"}
    raise AssertionError(f"no JSON type for {hint!r}")


def _field_problems(doc: dict[str, Any], record: type[Record], schema: dict[str, Any]) -> list[str]:
    hints = typing.get_type_hints(record)
    props = schema.get("properties", {})
    problems = []
    fields = {f.name for f in dataclasses.fields(record) if f.name != "raw"}
    for name in sorted(fields):
        if name not in props and isinstance(schema.get("additionalProperties"), dict):
            # a map answer (the webhook test's dict[str, str]): its keys are not in the document, its types are
            props = {**props, name: schema["additionalProperties"]}
        if name not in props:
            problems.append(f"{record.__name__}.{name}: not in the schema")
            continue
        allowed = _json_types(doc, props[name])
        accepted = _accepts(hints[name])
        if "any" not in accepted and not allowed <= accepted:
            problems.append(f"{record.__name__}.{name}: schema allows {sorted(allowed)}, record takes {sorted(accepted)}")
        # nested records and lists of records follow their own schema
        inner = [a for a in typing.get_args(hints[name]) if a is not type(None)] or [hints[name]]
        for arg in inner:
            item = typing.get_args(arg)[0] if typing.get_origin(arg) is list and typing.get_args(arg) else arg
            if inspect.isclass(item) and issubclass(item, Record):
                assert item.__name__ in SCHEMAS, f"{item.__name__} (in {record.__name__}.{name}) has no schema mapped"
    for name in schema.get("required", []):
        if name not in fields:
            problems.append(f"{record.__name__}: required schema field {name!r} missing from the record")
    return problems


def test_every_record_type_is_mapped_to_a_schema() -> None:
    assert set(_record_types()) == set(SCHEMAS)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_record_matches_its_schema(name: str, openapi: dict[str, Any]) -> None:
    record = _record_types()[name]
    schema = _schema_of(openapi, SCHEMAS[name])
    assert _field_problems(openapi, record, schema) == []


def test_create_only_fields_are_in_the_create_schemas(openapi: dict[str, Any]) -> None:
    for record, field in SCHEMA_ONLY_ON_CREATE:
        assert field in openapi["components"]["schemas"][SCHEMAS[record]]["required"]


def test_record_reads_nested_types_and_keeps_the_raw_object() -> None:
    job = records.Job.from_dict({"id": "j", "status": "failed", "error": {"code": "x", "message": None},
                                 "progress": {"fraction": 0.5, "message": "half"}, "future_field": 1})
    assert job.error == records.JobError("x", None) and job.progress.fraction == 0.5 and job.done and not job.ok
    assert job.kind is None and job.to_dict()["future_field"] == 1  # an older server's answer still reads


# --- 2. both faces send the same requests ----------------------------------------------------------------------
PAYLOAD = b"reelforge client bytes\n" * 64
SHA = hashlib.sha256(PAYLOAD).hexdigest()
JOB = {"id": "j1", "kind": "system.noop", "status": "running", "input": {}, "progress": {"fraction": 0.1,
                                                                                           "message": ""}}
SIGNED = {"url": "http://store.test/object?sig=1", "method": "PUT", "headers": {"Content-Type": "video/mp4"},
          "expires_at": None}
ASSET = {"id": "a1", "content_type": "video/mp4", "size": len(PAYLOAD), "sha256": SHA, "lifecycle": "hot",
         "filename": "clip.mp4", "download": {**SIGNED, "method": "GET"}}
VIDEO = {"id": "v1", "owner_id": "u1", "status": "uploading", "caption": ""}


def _answer(request: httpx.Request) -> httpx.Response:
    path, method = request.url.path, request.method
    if request.url.host == "store.test":
        if method == "GET":
            return httpx.Response(200, content=PAYLOAD)
        return httpx.Response(200, headers={"ETag": '"e1"'})
    if path.endswith("/events"):
        end = {**JOB, "status": "succeeded", "progress": {"fraction": 1.0, "message": ""}}
        body = (f"event: progress\ndata: {json.dumps({'fraction': 0.5})}\n\n"
                f"event: end\nid: 9\ndata: {json.dumps(end)}\n\n")
        return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/event-stream"})
    if path == "/v1/uploads" or (path.startswith("/v1/uploads/") and method == "GET"):
        return httpx.Response(201, json={"id": "up1", "status": "pending", "content_type": "video/mp4",
                                         "multipart": False, "put": SIGNED})
    if (path.startswith("/v1/uploads/") and path.endswith("/complete")) or path.startswith("/v1/assets/"):
        return httpx.Response(200, json=ASSET)
    if path == "/v1/videos/submit":
        return httpx.Response(201, json={"video": VIDEO, "upload": {**SIGNED, "id": "up1",
                                                                    "complete_url": "/v1/videos/v1/complete"}})
    if path.startswith("/v1/videos/") and path.endswith("/complete"):
        return httpx.Response(202, json={"video": VIDEO, "job_id": "j1"})
    if path == "/v1/webhooks/signing-secret":
        return httpx.Response(200, json={"secret": "s" * 32})
    if method == "DELETE" and "/api-keys/" not in path:
        return httpx.Response(204)
    if path.endswith("/batch") or path in ("/v1/admin/workers",):
        return httpx.Response(202, json={"data": [JOB]})
    return httpx.Response(200, json={**JOB, "data": [], "next_cursor": None, "access_token": "at",
                                     "refresh_token": "rt", "expires_in": 900, "balance": 1, "ledger": []})


def _upload_file(tmp: Path) -> Path:
    path = tmp / "clip.mp4"
    path.write_bytes(PAYLOAD)
    return path


# (namespace, method) -> (args, kwargs); `{file}` and `{dir}` stand for a local file and a directory.
CALLS: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any]]] = {
    ("auth", "register"): (("ada@example.com", "pw-pw-pw-pw"), {}),
    ("auth", "login"): (("ada@example.com", "pw-pw-pw-pw"), {}),
    ("auth", "refresh"): ((), {}),
    ("auth", "change_password"): (("pw-pw-pw-pw", "new-pw-new-pw"), {}),
    ("auth", "me"): ((), {}),
    ("api_keys", "create"): (("ci",), {}),
    ("api_keys", "list"): ((), {}),
    ("api_keys", "revoke"): (("k/1",), {}),
    ("jobs", "submit"): (("system.noop", {"echo": 1}), {"priority": 3, "callback_url": "https://cb.test/x", "wait": 5}),
    ("jobs", "batch"): (([{"kind": "system.noop", "input": {"echo": 1}}],), {}),
    ("jobs", "list"): ((), {"status": "succeeded", "kind": "system.noop", "limit": 2, "cursor": "c1"}),
    ("jobs", "iterate"): ((), {"status": "running", "page_size": 7}),
    ("jobs", "get"): (("j1",), {}),
    ("jobs", "handle"): (("j1",), {}),
    ("jobs", "cancel"): (("j1",), {}),
    ("jobs", "retry"): (("j1",), {}),
    ("jobs", "history"): (("j1",), {"after": 4}),
    ("jobs", "events"): (("j1",), {"timeout": 30}),
    ("jobs", "wait"): (("j1", None), {}),
    ("pipelines", "list"): ((), {}),
    ("pipelines", "get"): (("system.noop",), {}),
    ("models", "list"): (("image.generate",), {}),
    ("uploads", "create"): (("video/mp4", 10), {"filename": "a.mp4", "multipart": True}),
    ("uploads", "get"): (("up1",), {}),
    ("uploads", "complete"): (("up1",), {"parts": [(1, "e1")], "sha256": SHA}),
    ("uploads", "abort"): (("up1",), {}),
    ("assets", "upload"): (("{file}",), {"lifecycle": "temporary"}),
    ("assets", "download"): (("a1", "{dir}"), {}),
    ("assets", "list"): ((), {"limit": 5, "job_id": "j1"}),
    ("assets", "get"): (("a1",), {}),
    ("assets", "delete"): (("a1",), {}),
    ("credits", "get"): ((), {"limit": 3, "before": 9}),
    ("webhooks", "create"): (("https://hook.test/x", ["job.succeeded"], "ci"), {}),
    ("webhooks", "list"): ((), {}),
    ("webhooks", "get"): (("w1",), {}),
    ("webhooks", "delete"): (("w1",), {}),
    ("webhooks", "test"): (("w1",), {}),
    ("webhooks", "deliveries"): (("w1",), {}),
    ("webhooks", "signing_secret"): ((), {}),
    ("admin", "users"): ((), {"limit": 10, "offset": 20}),
    ("admin", "update_user"): (("u1",), {"role": "admin"}),
    ("admin", "grant_credits"): (("u1", 5, "bonus"), {}),
    ("admin", "redrive"): (("j1",), {}),
    ("admin", "queue"): ((), {"dead_limit": 3}),
    ("admin", "workers"): ((), {}),
    ("admin", "system"): ((), {}),
    ("admin", "alarms"): ((), {"hours": 2}),
    ("admin", "stats"): ((), {"hours": 3}),
    ("system", "health"): ((), {}),
    ("system", "ready"): ((), {}),
    # a handle, made by `jobs.handle("j1")`
    ("handle", "refresh"): ((), {}),
    ("handle", "cancel"): ((), {}),
    ("handle", "retry"): ((), {}),
    ("handle", "history"): ((), {"after": 2}),
    ("handle", "events"): ((), {"timeout": 10}),
    ("handle", "wait"): ((None,), {}),  # a deadline would put a clock reading in the request
    # applications
    ("videos", "submit"): ((len(PAYLOAD),), {"filename": "clip.mp4", "caption": "hi #tag"}),
    ("videos", "complete"): (("v1",), {"sha256": SHA}),
    ("videos", "upload"): (("{file}",), {"caption": "hi"}),
    ("videos", "get"): (("v1",), {}),
    ("videos", "of_user"): (("u1",), {"limit": 3}),
    ("videos", "feed"): ((), {"order": "best", "mob_id": "m1"}),
    ("videos", "similar"): (("v1",), {"k": 4}),
    ("videos", "validation"): (("v1",), {}),
    ("videos", "revalidate"): (("v1",), {}),
    ("videos", "history"): (("v1",), {}),
    ("videos", "admin_list"): ((), {"status": "failed", "user_id": "u1"}),
    ("videos", "admin_delete"): (("v1",), {}),
    ("videos", "admin_stats"): ((), {}),
    ("videos", "usage_stats"): ((), {"days": 3}),
    ("mobs", "list"): ((), {}),
    ("mobs", "get"): (("m1",), {}),
    ("mobs", "recluster"): ((), {}),
    ("upscale", "video"): (("a1",), {"model": "lanczos", "output": {"container": "mkv"}, "chunk_seconds": 1.0}),
    ("upscale", "image"): (("a1",), {"scale": 3, "format": "png"}),
    ("upscale", "models"): ((), {}),
    ("roto", "create_session"): (("a1",), {"name": "clip", "engine": "auto"}),
    ("roto", "get_session"): (("s/1",), {}),
    ("roto", "list_sessions"): ((), {"limit": 5, "cursor": "c1"}),
    ("roto", "delete_session"): (("s1",), {}),
    ("roto", "add_object"): (("s1",), {"name": "ball"}),
    ("roto", "delete_object"): (("s1", 2), {}),
    ("roto", "prompt"): (("s1", 3, [(10, 20), (30.5, 40, 0), {"x": 1, "y": 2}]), {"object_id": 2,
                                                                                  "box": (1, 2, 30, 40)}),
    ("roto", "delete_prompt"): (("s1", "p1"), {}),
    ("roto", "frame"): (("s1", 7), {}),
    ("roto", "frame_masks"): (("s1", 7), {}),
    ("roto", "propagate"): (("s1",), {"range": (2, 9), "exports": ["coco", "alpha_webm"], "per_object": True}),
    ("film", "create_project"): (("The Storm",), {"script": "INT. ROOM - DAY", "characters": [{"name": "Anna"}]}),
    ("film", "get_project"): (("p/1",), {}),
    ("film", "update_project"): (("p1",), {"script": "Anna waits."}),
    ("film", "delete_project"): (("p1",), {}),
    ("film", "analyze"): (("p1",), {}),
    ("film", "render"): (("p1",), {"aspect": "9:16", "height": 360, "languages": ["fr"], "music": False}),
}


def _namespace_classes() -> dict[str, type]:
    with Client("http://rf.test", api_key="k") as c:
        core = {name: type(v) for name, v in vars(c).items() if isinstance(v, Namespace)}
    apps = {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**core, **apps, "handle": JobHandle}


def _operations(cls: type) -> set[str]:
    return {name for klass in cls.__mro__ for name, v in vars(klass).items() if isinstance(v, (call, Streamed))}


def test_the_table_holds_every_call() -> None:
    namespaces = _namespace_classes()
    assert {"auth", "api_keys", "jobs", "assets", "uploads", "credits", "webhooks", "models", "pipelines", "admin",
            "system", "videos", "mobs", "upscale", "roto", "film"} <= set(namespaces)
    expected = {(ns, op) for ns, cls in namespaces.items() for op in _operations(cls)}
    assert set(CALLS) == expected


def _wire(request: httpx.Request) -> tuple[Any, ...]:
    headers = {k: v for k, v in request.headers.items()
               if not (k == "idempotency-key" and v.startswith("client-"))}  # a fresh nonce per submit
    body = request.read()
    try:
        content: Any = json.loads(body) if body else None
    except ValueError:
        content = body
    return request.method, str(request.url), content, sorted(headers.items())


def _args(args: tuple[Any, ...], kwargs: dict[str, Any], tmp: Path) -> tuple[tuple[Any, ...], dict[str, Any]]:
    def sub(v: Any) -> Any:
        return {"{file}": tmp / "clip.mp4", "{dir}": tmp / "out"}.get(v, v) if isinstance(v, str) else v

    return tuple(sub(a) for a in args), {k: sub(v) for k, v in kwargs.items()}


def _sync_requests(ns: str, op: str, tmp: Path) -> list[tuple[Any, ...]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(request)

    args, kwargs = _args(*CALLS[(ns, op)], tmp)
    with Client("http://rf.test", access_token="at", refresh_token="rt", upload_state_dir=tmp / "state",
                transport=httpx.MockTransport(handler)) as c:
        target = c.jobs.handle("j1") if ns == "handle" else getattr(c, ns)
        seen.clear()
        out = getattr(target, op)(*args, **kwargs)
        if inspect.isgenerator(out):
            list(out)
    return [_wire(r) for r in seen]


def _async_requests(ns: str, op: str, tmp: Path) -> list[tuple[Any, ...]]:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        seen.append(request)
        return _answer(request)

    async def main() -> None:
        args, kwargs = _args(*CALLS[(ns, op)], tmp)
        async with AsyncClient("http://rf.test", access_token="at", refresh_token="rt",
                               upload_state_dir=tmp / "state", transport=httpx.MockTransport(handler)) as c:
            target = await c.jobs.handle("j1") if ns == "handle" else getattr(c, ns)
            seen.clear()
            out = getattr(target, op)(*args, **kwargs)
            if inspect.isasyncgen(out):
                _ = [x async for x in out]
            else:
                await out

    asyncio.run(main())
    return [_wire(r) for r in seen]


@pytest.mark.parametrize(("ns", "op"), sorted(CALLS))
def test_both_faces_send_the_same_requests(ns: str, op: str, tmp_path: Path) -> None:
    _upload_file(tmp_path)
    (tmp_path / "out").mkdir()
    blocking = _sync_requests(ns, op, tmp_path)
    asynchronous = _async_requests(ns, op, tmp_path)
    assert blocking and blocking == asynchronous


def test_handles_and_namespaces_belong_to_their_face() -> None:
    from reelforge.client import AsyncJobHandle

    def handler(request: httpx.Request) -> httpx.Response:
        return _answer(request)

    with Client("http://rf.test", api_key="k", transport=httpx.MockTransport(handler)) as c:
        handle = c.jobs.submit("system.noop")
        assert type(handle) is JobHandle and handle.client is c and handle.wait(5).ok
        assert c.videos is c.videos and type(c.videos).__name__ == "Videos"  # made once, on first use
        with pytest.raises(AttributeError):
            _ = c.no_such_namespace
        assert isinstance(c, Resources)

    async def main() -> None:
        async with AsyncClient("http://rf.test", api_key="k",
                               transport=httpx.MockTransport(handler)) as a:
            h = await a.jobs.submit("system.noop")
            assert type(h) is AsyncJobHandle and (await h.wait(5)).ok
            assert [j async for j in a.jobs.iterate()] == []

    asyncio.run(main())
