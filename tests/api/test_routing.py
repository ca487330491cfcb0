"""The /v1 index answers exactly as FastAPI's own route walk would: same route chosen, same 404/405/redirects, same
validation errors on lean calls; and lean calls are used only where nothing but parameters and authentication
stand between the request and the endpoint."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from starlette.routing import Mount

from reelforge.api.routing import ApiIndex, served_routes


async def who(request: Request) -> str:
    if request.headers.get("authorization") != "Bearer ok":
        raise HTTPException(status_code=401, detail="no")
    return "alice"


async def other(request: Request) -> str:
    return "other"


Who = Annotated[str, Depends(who)]


def routers() -> list[APIRouter]:
    a = APIRouter()

    @a.get("/items/special")
    async def special(p: Who) -> Response:
        return JSONResponse({"route": "special", "p": p})

    @a.get("/items/{item_id}")
    async def item(item_id: str, p: Who, request: Request) -> Response:
        return JSONResponse({"route": "item", "id": item_id, "p": p, "q": request.query_params.get("q")})

    @a.post("/items/{item_id}")
    async def post_item(item_id: str, p: Who) -> Response:
        return JSONResponse({"route": "post_item", "id": item_id})

    @a.get("/items")
    async def items(p: Who, limit: Annotated[int, Query(ge=1, le=10)] = 5,
                    tag: Annotated[str | None, Query(max_length=3)] = None,
                    x_trace: Annotated[str | None, Header()] = None) -> Response:
        return JSONResponse({"route": "items", "limit": limit, "tag": tag, "trace": x_trace})

    @a.get("/counted/{n}")
    async def counted(n: int, p: Who) -> Response:
        return JSONResponse({"route": "counted", "n": n})

    @a.get("/guarded/{item_id}")
    async def guarded(item_id: str, p: Annotated[str, Depends(other)]) -> Response:
        return JSONResponse({"route": "guarded", "p": p})

    @a.get("/model/{item_id}")
    async def model(item_id: str, p: Who) -> dict[str, Any]:
        return {"route": "model", "id": item_id}

    b = APIRouter()

    @b.get("/files/{rest:path}")
    async def files(rest: str, p: Who) -> Response:
        return JSONResponse({"route": "files", "rest": rest})

    @b.get("/{kind}/latest")
    async def latest(kind: str, p: Who) -> Response:
        return JSONResponse({"route": "latest", "kind": kind})

    return [a, b]


@pytest.fixture(scope="module")
def clients() -> tuple[TestClient, TestClient, ApiIndex]:
    rs = routers()
    indexed = FastAPI()
    index = ApiIndex("/v1", rs, who)
    indexed.router.routes.insert(0, Mount("/v1", app=index))
    plain = FastAPI()
    for r in rs:
        plain.include_router(r, prefix="/v1")
    return TestClient(indexed), TestClient(plain), index


CASES = [
    ("GET", "/v1/items/special"), ("GET", "/v1/items/abc?q=1"), ("POST", "/v1/items/abc"),
    ("DELETE", "/v1/items/abc"), ("GET", "/v1/items"), ("GET", "/v1/items?limit=3&tag=ab"),
    ("GET", "/v1/items?limit=0"), ("GET", "/v1/items?limit=x&tag=abcd"), ("GET", "/v1/counted/7"),
    ("GET", "/v1/counted/seven"), ("GET", "/v1/guarded/a"), ("GET", "/v1/model/a"), ("GET", "/v1/files/a/b/c.txt"),
    ("GET", "/v1/items/latest"), ("GET", "/v1/things/latest"), ("GET", "/v1/nothing/here/at/all"),
    ("GET", "/v1/items/abc/"), ("GET", "/v1/nope"),
]


@pytest.mark.parametrize(("method", "path"), CASES)
def test_the_index_answers_as_fastapis_walk(clients: tuple[TestClient, TestClient, ApiIndex], method: str,
                                            path: str) -> None:
    indexed, plain, _ = clients
    for headers in ({"Authorization": "Bearer ok", "X-Trace": "t1"}, {}):
        got = indexed.request(method, path, headers=headers, follow_redirects=False)
        want = plain.request(method, path, headers=headers, follow_redirects=False)
        assert (got.status_code, got.headers.get("location"), got.headers.get("allow")) == \
            (want.status_code, want.headers.get("location"), want.headers.get("allow")), (method, path, headers)
        if want.headers.get("content-type", "").startswith("application/json"):
            assert got.json() == want.json(), (method, path, headers)


def test_lean_calls_only_where_parameters_and_authentication_are_all(
        clients: tuple[TestClient, TestClient, ApiIndex]) -> None:
    _, _, index = clients
    lean = {next(iter(r.methods or ())) + " " + r.path for r in index.routes if id(r) in index.lean}
    # `guarded` has another dependency and `model` returns a model FastAPI must serialize: both stay FastAPI's.
    assert lean == {"GET /items/special", "GET /items/{item_id}", "POST /items/{item_id}", "GET /items",
                    "GET /counted/{n}", "GET /files/{rest:path}", "GET /{kind}/latest"}


def test_served_routes_lists_the_index() -> None:
    app = FastAPI()
    app.router.routes.insert(0, Mount("/v1", app=ApiIndex("/v1", routers())))
    served = {(path, frozenset(methods or ())) for path, methods in served_routes(app.routes)}
    assert ("/v1/items/{item_id}", frozenset({"GET"})) in served and len(served) == 9


def test_nested_routers_are_refused() -> None:
    outer = APIRouter()
    inner = APIRouter()

    @inner.get("/x")
    async def x() -> Response:
        return Response()

    outer.include_router(inner, prefix="/in")
    if all(type(r).__name__ == "APIRoute" for r in outer.routes):
        pytest.skip("this FastAPI version flattens included routers into plain routes")
    with pytest.raises(TypeError, match="plain API routes"):
        ApiIndex("/v1", [outer])
