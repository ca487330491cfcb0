"""RFC 9457 problem+json for every error, with a stable machine-readable `code`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reelforge import errors

log = logging.getLogger("reelforge.api")

PROBLEM = "application/problem+json"

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited"}

_RESERVED = frozenset({"type", "title", "status", "detail", "code", "instance", "headers", "retry_after"})


def problem(status: int, code: str, title: str, detail: str, *, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The problem+json answer. Every text in it is scrubbed of filesystem paths and raw errno values (the one
    place all problems pass through), so no error can show where the server keeps its files."""
    body: dict[str, Any] = {"type": f"https://reelforge.dev/problems/{code}", "title": title, "status": status,
                            "detail": errors.scrub(detail), "code": code}
    if instance:
        body["instance"] = instance
    body.update({k: errors.scrub_value(v) for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.ReelforgeError)
    async def _reelforge(request: Request, exc: errors.ReelforgeError) -> JSONResponse:
        headers = {}
        if isinstance(exc, errors.RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if exc.status >= 500:
            log.warning("request failed: %s %s", exc.code, exc.message)
        # Details are extra members; they never override the RFC 9457 members (or problem()'s own arguments).
        # An internal error's details (commands, internal names) stay in the log.
        details = {k: v for k, v in exc.details.items() if k not in _RESERVED} if exc.status != 500 else {}
        # Only documented codes leave the server: an unknown one becomes its status's generic code.
        known = getattr(getattr(request.app.state, "container", None), "error_codes", None)
        code = errors.public_code(exc.code, known, status=exc.status)
        return problem(exc.status, code, exc.title, exc.message, instance=request.url.path, headers=headers,
                       **details)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
            fields.append({"field": ".".join(loc), "message": e.get("msg", "invalid"), "type": e.get("type", "")})
        # A value nested too deep anywhere is what the whole body is refused for.
        deep = [f for f in fields if f["type"] == "input_too_deep"]
        first = (deep or fields or [{"field": "", "message": "invalid"}])[0]
        detail = f"{first['field'] or 'request'}: {first['message']}"
        return problem(422, "input_too_deep" if deep else "validation_error", "Invalid input", detail,
                       instance=request.url.path, errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, errors.ReelforgeError):
            # FastAPI turns any error raised while it reads the body into a 400; ours say what went wrong
            # (e.g. the body limit tripping on a chunked body without Content-Length is a 413).
            return await _reelforge(request, exc.__cause__)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail), instance=request.url.path,
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "Internal error", "Something went wrong on our side; it was logged.",
                       instance=request.url.path)
