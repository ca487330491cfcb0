"""The OpenAPI document: FastAPI's, with the bearer security scheme and every problem response a route can give.

FastAPI documents a route's success and its validation error, in FastAPI's own shape. Every reelforge error is
problem+json (api/problems.py), and some are given by layers a route does not see: authentication (401, 403),
the guard middleware (400 for a NUL in the URL, 413 for a body over the limit, 429 for the write rate limit).
`document` adds those to each operation from what the route declares (its dependencies, parameters, body and
method), and a route adds the rest of what it raises with `responses={409: ..., 402: ...}` (`problems(...)`).
The contract test (tests/api/test_openapi_contract.py) checks that the API answers nothing undocumented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from reelforge.api.problems import PROBLEM

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem: `code` is the stable, machine-readable reason (see docs/errors).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}, "type": {"type": "string"}}}},
    },
    "additionalProperties": True,
}

_WHY = {
    400: "Bad request (for example a NUL character in the URL)",
    401: "Missing, invalid or expired credentials",
    402: "Not enough credits",
    403: "Not allowed (admin only, account disabled, or a scope the key lacks)",
    404: "No such resource visible to the caller",
    409: "Conflicts with the resource's current state",
    413: "Request body over the limit",
    415: "Unsupported media type",
    422: "Invalid parameters or body",
    429: "Rate limited; see Retry-After",
    503: "A dependency is unavailable; retry later",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for problem answers a route gives itself (beyond those `document` adds)."""
    return {code: {"description": _WHY.get(code, "Problem"), "content": {PROBLEM: {
        "schema": {"$ref": "#/components/schemas/Problem"}}}} for code in codes}


def _uses(dependant: Any, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _uses(d, call) for d in dependant.dependencies)


def _routes(mounted: Iterable[tuple[str, APIRouter]]) -> Iterable[tuple[str, APIRoute]]:
    for prefix, router in mounted:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                yield prefix.rstrip("/") + route.path_format, route


def document(*, title: str, version: str, description: str, routes: list[Any],
             mounted: Iterable[tuple[str, APIRouter]], authenticate: Callable[..., Any]) -> dict[str, Any]:
    """FastAPI's document of `routes`, completed for the operations of the `mounted` (prefix, router) pairs."""
    doc = get_openapi(title=title, version=version, description=description, routes=routes)
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "A JWT access token from POST /v1/auth/token, or an API key (`rf_...`)"}
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    problem_ref = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, route in _routes(mounted):
        for method in route.methods or ():
            op = doc.get("paths", {}).get(path, {}).get(method.lower())
            if op is None:
                continue
            d = route.dependant
            authenticated = _uses(d, authenticate)
            op["security"] = [{"bearer": []}] if authenticated else []
            codes = {400}
            if authenticated:
                codes |= {401, 403}
            if d.path_params:
                codes.add(404)
            if d.path_params or d.query_params or d.header_params or d.cookie_params or route.body_field:
                codes.add(422)
            if method in WRITE_METHODS:
                codes |= {413, 429}
            responses = op.setdefault("responses", {})
            for code in sorted(codes):
                entry = responses.setdefault(str(code), {"description": _WHY.get(code, "Problem")})
                entry["content"] = problem_ref  # FastAPI's 422 names its own shape; ours is a problem
    import json

    if "#/components/schemas/HTTPValidationError" not in json.dumps(doc.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return doc
