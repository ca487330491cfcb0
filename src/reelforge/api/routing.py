"""The `/v1` API's dispatch: an index from a path's shape to the routes that can match it.

FastAPI walks its routes in order, one regular expression and a few scope updates each, and a route in an
included router is matched twice (once to choose the router, once inside it). On the hottest reads that walk
was about a fifth of the request's CPU time. `ApiIndex` is mounted at `/v1` and holds the resource routers'
routes, grouped by the first literal segment of their path and its number of segments: `/v1/jobs/{id}` tries
only the two-segment routes under `jobs` (and any route whose first segment is a parameter or that ends in a
`{name:path}` parameter), in the order they were declared, so which route answers is exactly what FastAPI's
walk would have chosen. The routes themselves are FastAPI's: dependencies, validation and
responses are untouched. The OpenAPI document is built from the same routers (`openapi_routes`).

Lean calls: FastAPI's request handler (exit stacks, body parsing, a dependency solve per parameter kind, per
sub-dependency) took about a quarter of a cached job read's CPU time (0.048 of 0.175 ms in process). A route
whose endpoint is a coroutine that takes only path, query and header parameters, the `Request` and the caller's
principal (the `authenticate` dependency, the same one function every route authenticates through), and returns
a `Response`, needs none of that: the index validates the parameters with FastAPI's own function and calls the
endpoint. Every other route, including one with an admin check, another dependency, a cookie or a body, goes
through FastAPI's handler. What the endpoint raises reaches the same exception handlers either way.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

# Where the matched route's full template ("/v1/jobs/{job_id}") is left for metrics, logs and traces.
ROUTE_TEMPLATE_KEY = "reelforge.route_template"


def _first_literal(path: str) -> str | None:
    first = path.strip("/").split("/", 1)[0]
    return None if "{" in first else first


def _depth(path: str) -> int | None:
    return None if ":path}" in path else len(path.strip("/").split("/"))


class ApiIndex:
    """An ASGI app for everything under `mount`, dispatching through an index of path shapes (see the module)."""

    def __init__(self, mount: str, routers: Iterable[APIRouter],
                 authenticate: Callable[[Request], Awaitable[Any]] | None = None) -> None:
        self.mount = mount.rstrip("/")
        self.routes: list[APIRoute] = []
        for router in routers:
            for route in router.routes:
                if not isinstance(route, APIRoute):
                    raise TypeError(f"only plain API routes can be mounted under {mount}, not {route!r} "
                                    "(declare nested routers' routes on the router itself)")
                self.routes.append(route)
        # Route shapes: the first literal segment (None for a parameter) and the segment count (None when a
        # `{name:path}` parameter can span several).
        shapes = [(_first_literal(r.path), _depth(r.path)) for r in self.routes]
        firsts = {f for f, _ in shapes if f is not None}
        depths = {d for _, d in shapes if d is not None}

        def fitting(first: str | None, depth: int | None) -> tuple[BaseRoute, ...]:
            # Declaration order: a literal route declared before a parameter route wins, as in FastAPI's walk.
            return tuple(r for r, (f, d) in zip(self.routes, shapes, strict=True)
                         if (f is None or f == first) and (d is None or d == depth))

        self.index: dict[tuple[str | None, int | None], tuple[BaseRoute, ...]] = {
            (f, d): fitting(f, d) for f in (*firsts, None) for d in (*depths, None)}
        self._firsts = frozenset(firsts)
        self._depths = frozenset(depths)
        self.lean: dict[int, ASGIApp] = {}  # by id(route): routes compare by value, not hash
        if authenticate is not None:
            for route in self.routes:
                app = lean_app(route, authenticate)
                if app is not None:
                    self.lean[id(route)] = app

    def candidates(self, path: str) -> Sequence[BaseRoute]:
        parts = path.strip("/").split("/")
        first = parts[0] if parts[0] in self._firsts else None
        depth = len(parts) if len(parts) in self._depths else None
        return self.index[(first, depth)]

    def find(self, scope: Scope) -> tuple[Match, BaseRoute | None, Scope]:
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self.candidates(get_route_path(scope)):
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, route, child
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        if partial is not None:
            return Match.PARTIAL, partial[0], partial[1]
        return Match.NONE, None, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        match, route, child = self.find(scope)
        if route is None:
            path = get_route_path(scope)
            if scope["type"] == "http" and path not in ("", "/"):
                # As FastAPI's router does: the other form of a trailing slash, when that one has a route.
                other = dict(scope, path=scope["path"].rstrip("/") if path.endswith("/") else scope["path"] + "/")
                if self.find(other)[1] is not None:
                    from starlette.datastructures import URL

                    await RedirectResponse(url=str(URL(scope=other)))(scope, receive, send)
                    return
            raise HTTPException(status_code=404)
        scope.update(child)
        scope[ROUTE_TEMPLATE_KEY] = self.mount + getattr(route, "path", "")
        lean = self.lean.get(id(route)) if match is Match.FULL else None
        if lean is not None:
            await lean(scope, receive, send)
        else:
            await route.handle(scope, receive, send)


class PrefixMount(Mount):
    """A `Mount` of an app at a fixed prefix, matched by a string comparison instead of the mount's regular
    expression; the child scope is the one `Mount` builds (the prefix moves from the path to the root path)."""

    def __init__(self, prefix: str, app: ASGIApp, name: str | None = None) -> None:
        super().__init__(prefix, app=app, name=name)
        self.prefix = prefix.rstrip("/")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket"):
            route_path = get_route_path(scope)
            prefix = self.prefix
            if route_path.startswith(prefix) and (len(route_path) == len(prefix) or route_path[len(prefix)] == "/"):
                root_path = scope.get("root_path", "")
                return Match.FULL, {
                    "path_params": dict(scope.get("path_params", {})),
                    "app_root_path": scope.get("app_root_path", root_path),
                    "root_path": root_path + prefix,
                    "endpoint": self.app,
                }
        return Match.NONE, {}


def lean_app(route: APIRoute, authenticate: Callable[[Request], Awaitable[Any]]) -> ASGIApp | None:
    """A direct call of `route`'s endpoint when its signature allows one (see the module), else None."""
    d = route.dependant
    call = d.call
    if call is None or not inspect.iscoroutinefunction(call):
        return None
    if d.cookie_params or d.body_params or route.body_field is not None:
        return None
    if (d.response_param_name or d.background_tasks_param_name or d.security_scopes_param_name
            or d.websocket_param_name or d.http_connection_param_name):
        return None
    if route.dependencies:  # route- or router-level dependencies run for their effects: keep FastAPI's handler
        return None
    try:
        returns = typing.get_type_hints(call).get("return")
    except Exception:  # an annotation that does not resolve: let FastAPI handle it
        return None
    if not (inspect.isclass(returns) and issubclass(returns, Response)):
        return None
    auth_names: list[str] = []
    for sub in d.dependencies:
        if (sub.call is not authenticate or sub.name is None or sub.dependencies or sub.path_params
                or sub.query_params or sub.header_params or sub.cookie_params or sub.body_params):
            return None
        auth_names.append(sub.name)
    # Text path parameters without constraints need no validation; any other parameter is validated by
    # FastAPI's own function, so values and errors are exactly what its handler would produce.
    plain_path = all(f.field_info.annotation is str and not f.field_info.metadata and f.alias == f.name
                     for f in d.path_params)
    path_fields = [] if plain_path else list(d.path_params)
    path_names = [f.name for f in d.path_params] if plain_path else []
    query_fields = list(d.query_params)
    header_fields = list(d.header_params)
    request_name = d.request_param_name

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        path_params = scope["path_params"]
        kwargs: dict[str, Any] = {name: path_params[name] for name in path_names}
        if auth_names:  # first, as FastAPI solves sub-dependencies before parameters
            principal = await authenticate(request)
            for name in auth_names:
                kwargs[name] = principal
        if path_fields or query_fields or header_fields:
            problems: list[Any] = []
            for fields, received in ((path_fields, path_params), (query_fields, request.query_params),
                                     (header_fields, request.headers)):
                if fields:
                    values, errs = request_params_to_args(fields, received)
                    kwargs.update(values)
                    problems += errs
            if problems:
                raise RequestValidationError(problems)
        if request_name:
            kwargs[request_name] = request
        response = await call(**kwargs)
        await response(scope, receive, send)

    return app


def openapi_routes(mount: str, routers: Iterable[APIRouter], *others: APIRouter) -> list[BaseRoute]:
    """The routes the OpenAPI document describes: the mounted routers under their prefix, then `others`."""
    doc = APIRouter()
    for router in routers:
        doc.include_router(router, prefix=mount.rstrip("/"))
    for router in others:
        doc.include_router(router)
    return list(doc.routes)


def served_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, set[str] | None]]:
    """(full path template, methods) of every route the `/v1` indexes among `routes` dispatch to."""
    out: list[tuple[str, set[str] | None]] = []
    for route in routes:
        index = getattr(route, "app", None)
        if isinstance(index, ApiIndex):
            out += [(index.mount + getattr(r, "path", ""), getattr(r, "methods", None)) for r in index.routes]
    return out
