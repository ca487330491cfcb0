from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from reelforge import errors
from reelforge.adapters.storage.common import object_headers
from reelforge.api import convert
from reelforge.api.deps import Container, CurrentUser, container_of
from reelforge.api.schemas.storage import AssetPublic, AssetsPublic, UploadComplete, UploadCreate, UploadPublic

router = APIRouter(tags=["storage"])


@router.post("/uploads", status_code=201, response_model=UploadPublic)
def create_upload(body: UploadCreate, p: CurrentUser, c: Container) -> UploadPublic:
    """A signed PUT URL (or one per part for large files) bound to key, content type and size, expiring."""
    ticket = c.assets.create_upload(p, filename=body.filename, content_type=body.content_type, size=body.size,
                                    sha256=body.sha256, lifecycle=body.lifecycle, multipart=body.multipart)
    return convert.upload(ticket.upload, ticket)


@router.get("/uploads/{upload_id}", response_model=UploadPublic)
def get_upload(upload_id: str, p: CurrentUser, c: Container) -> UploadPublic:
    return convert.upload(c.assets.get_upload(p, upload_id))


@router.post("/uploads/{upload_id}/complete", response_model=AssetPublic)
def complete_upload(upload_id: str, body: UploadComplete, p: CurrentUser, c: Container) -> AssetPublic:
    """Checks size and sha256 of the stored bytes, then registers the asset."""
    parts = [(x.part_number, x.etag) for x in body.parts] if body.parts else None
    asset = c.assets.complete_upload(p, upload_id, parts=parts, sha256=body.sha256.lower() if body.sha256 else None)
    return convert.asset(asset, c.assets.download_url(asset))


@router.post("/uploads/{upload_id}/abort", response_model=UploadPublic)
def abort_upload(upload_id: str, p: CurrentUser, c: Container) -> UploadPublic:
    return convert.upload(c.assets.abort_upload(p, upload_id))


@router.get("/assets", response_model=AssetsPublic)
def list_assets(p: CurrentUser, c: Container, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                job_id: Annotated[str | None, Query(max_length=64)] = None) -> AssetsPublic:
    return AssetsPublic(data=[convert.asset(a) for a in c.assets.list(p, limit=limit, job_id=job_id)])


@router.get("/assets/{asset_id}", response_model=AssetPublic, openapi_extra={"parameters": [
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "An ETag of an earlier answer: 304 while that copy is current"}]}, responses={
    304: {"description": "Not modified: the asset is as the `If-None-Match` ETag names it, and the download URL "
                         "of that copy still has at least half of its lifetime left"}})
async def get_asset(asset_id: str, p: CurrentUser, request: Request) -> Response:
    """Metadata and a signed GET URL, with an ETag; `If-None-Match` answers 304 while the copy it names is current.

    The signed URL is new on every answer, so the ETag is the asset's fields plus the expiry of the URL in that
    answer: a client's copy counts as current while the asset is unchanged and its URL has at least half of
    `storage.download_expiry_s` left, so a 304 never leaves a client with a URL about to expire.
    """
    c = container_of(request)
    if_none_match = request.headers.get("if-none-match")
    asset = await c.assets.read(p, asset_id)
    fields = to_json(convert.asset_fields(asset))
    if if_none_match:
        for tag in if_none_match.split(","):
            digest, _, exp = tag.strip().removeprefix("W/").strip('"').partition(".")
            if (exp.isdigit() and convert.digest(fields, exp) == digest
                    and int(exp) - time.time() >= c.settings.storage.download_expiry_s / 2):
                return Response(status_code=304, headers={"ETag": tag.strip(), "Cache-Control": "private, no-cache"})
    download = c.assets.download_url(asset)
    exp = str(int(download.expires_at or 0))
    etag = f'"{convert.digest(fields, exp)}.{exp}"'
    return convert.tagged(to_json(convert.asset_fields(asset, download)), etag, None)


@router.delete("/assets/{asset_id}", status_code=204)
def delete_asset(asset_id: str, p: CurrentUser, c: Container) -> Response:
    c.assets.delete(p, asset_id)
    return Response(status_code=204)


# --- signed URLs of the local object store ---------------------------------------------------------
def _local_store(c: Any) -> Any:
    store = c.objects
    if not hasattr(store, "verify_signed"):
        raise errors.NotFound("This server's object store serves its own URLs", code="not_found")
    return store


@router.get("/storage/objects/{key:path}", include_in_schema=False)
def get_object(key: str, request: Request, c: Container) -> StreamingResponse:
    store = _local_store(c)
    params = store.verify_signed("GET", key, dict(request.query_params))
    if params.get("op") != "get":
        raise errors.Forbidden("URL not valid for this operation", code="invalid_signature")
    info = store.head(key)
    if info is None:
        raise errors.ObjectNotFound("Object not found")
    fh = store.open(key)

    def chunks() -> Iterator[bytes]:
        try:
            while block := fh.read(1024 * 1024):
                yield block
        finally:
            fh.close()

    # Any user may store any type: served from this origin (the console's), an object must never run as a page.
    headers = {"Content-Length": str(info.size), "ETag": f'"{info.sha256}"', "Cache-Control": "private, max-age=60",
               **object_headers(info.content_type, params.get("filename"))}
    return StreamingResponse(chunks(), media_type=info.content_type, headers=headers)


class _BodyReader:
    """A file-like view of the request body for the store's streaming writes (read from a worker thread).

    Each ``read`` hands out what the server has received so far (at most ``n`` bytes), so the store writes
    the body as it arrives and holds no more than one network chunk of it; nothing is read ahead.
    """

    def __init__(self, request: Request, portal: Any) -> None:
        self._iter: AsyncIterator[bytes] = request.stream().__aiter__()
        self._buf = memoryview(b"")
        self._done = False
        self._portal = portal

    def read(self, n: int = -1) -> bytes:
        while not self._buf and not self._done:
            try:
                self._buf = memoryview(self._portal(self._iter.__anext__))
            except StopAsyncIteration:
                self._done = True
        if n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, memoryview(b"")
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return bytes(out)


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared and declared.isdigit() else None


@router.put("/storage/objects/{key:path}", include_in_schema=False)
async def put_object(key: str, request: Request, c: Container) -> Response:
    """A signed PUT of a whole object or of one multipart part, streamed to the store as it arrives.

    The signature carries the byte limit (``max``: the upload's size, or this part's size): a larger
    Content-Length is refused before any byte is read, and a body that runs past the limit is refused as
    soon as it does (413), its remaining bytes unread and nothing of it kept.
    """
    from anyio.from_thread import run as from_thread_run

    store = _local_store(c)
    params = store.verify_signed("PUT", key, dict(request.query_params))
    op = params.get("op")
    declared = _declared_length(request)
    upload = c.assets.upload_for_key(key)
    if upload is not None and upload.status != "pending":
        # A signed URL outlives its upload; once completed or aborted, the asset's bytes are final.
        raise errors.Conflict(f"This upload is {upload.status}", code="upload_closed")
    limit = int(params["max"])
    if op == "put":
        store.check_put_headers(params, request.headers.get("content-type"))
        if declared is not None and declared > limit:
            raise errors.PayloadTooLarge(f"This URL accepts at most {limit} bytes", limit=limit)
        reader = _BodyReader(request, from_thread_run)
        info = await run_in_threadpool(store.put_stream, key, reader, params["ct"], limit,
                                       lifecycle=params.get("lc", "hot"))
        return Response(status_code=200, headers={"ETag": f'"{info.sha256}"'})
    if op == "part":
        number = int(params["part"])
        if declared is not None and declared > limit:
            raise errors.PayloadTooLarge(f"Part {number} is at most {limit} bytes", code="part_too_large",
                                         limit=limit)
        reader = _BodyReader(request, from_thread_run)
        part = await run_in_threadpool(store.upload_part, key, params["upload_id"], number, reader, limit)
        return Response(status_code=200, headers={"ETag": f'"{part.etag}"'})
    raise errors.Forbidden("URL not valid for this operation", code="invalid_signature")
