"""Files through signed URLs: uploads (single PUT or multipart, journaled so that a later run resumes) and
verified downloads, as flows that either face runs."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from reelforge.client.core import (
    CHUNK,
    Blocking,
    Call,
    Chunks,
    Close,
    Flow,
    Next,
    Send,
    Session,
    Sleep,
    clean,
    nothing,
    one,
    seg,
)
from reelforge.client.errors import (
    ApiError,
    ChecksumMismatch,
    ResumeError,
    UploadFailed,
    retry_after_of,
    transport_error,
)
from reelforge.client.records import Asset, Upload, UploadPart

BytesCallback = Callable[[int, int], None]


# --- the routes ---------------------------------------------------------------------------------------------
def create_upload(content_type: str, size: int, filename: str | None = None, sha256: str | None = None,
                  lifecycle: str = "hot", multipart: bool | None = None) -> Call[Upload]:
    body = clean({"content_type": content_type, "size": size, "filename": filename, "sha256": sha256,
                  "lifecycle": lifecycle, "multipart": multipart})
    return Call("POST", "/v1/uploads", one(Upload), json=body)


def get_upload(upload_id: str) -> Call[Upload]:
    return Call("GET", f"/v1/uploads/{seg(upload_id)}", one(Upload))


def complete_upload(upload_id: str, parts: list[tuple[int, str]] | None = None,
                    sha256: str | None = None) -> Call[Asset]:
    body: dict[str, Any] = clean({"sha256": sha256})
    if parts:
        body["parts"] = [{"part_number": n, "etag": e} for n, e in parts]
    return Call("POST", f"/v1/uploads/{seg(upload_id)}/complete", one(Asset), json=body)


def abort_upload(upload_id: str) -> Call[Upload]:
    return Call("POST", f"/v1/uploads/{seg(upload_id)}/abort", one(Upload))


def get_asset(asset_id: str) -> Call[Asset]:
    return Call("GET", f"/v1/assets/{seg(asset_id)}", one(Asset))


def delete_asset(asset_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/assets/{seg(asset_id)}", nothing)


# --- local helpers ------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def guess_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class ByteCounter:
    """Counts transferred bytes for an ``on_progress(done, total)`` callback; rewinds on a retried request."""

    def __init__(self, total: int, callback: BytesCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def add(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)

    def rewind(self, to: int) -> None:
        self.done = to


def file_range(path: Path, offset: int, length: int, counter: ByteCounter) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            block = fh.read(min(CHUNK, left))
            if not block:
                raise OSError(f"{path} is shorter than expected (changed during the upload?)")
            left -= len(block)
            counter.add(len(block))
            yield block


class Journal:
    """A multipart upload's local record (signed URLs + finished parts), so that a later run re-sends only
    what is missing. Lives in the client's ``upload_state_dir``; removed when the upload completes."""

    def __init__(self, directory: Path | None, upload: Upload, path: Path, size: int, sha256: str,
                 parts: dict[int, str] | None = None) -> None:
        self.file = directory / f"{seg(upload.id)}.json" if directory is not None else None
        self.upload = upload
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.parts: dict[int, str] = dict(parts or {})

    def save(self) -> None:
        if self.file is None:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"upload": self.upload.raw, "path": str(self.path), "size": self.size, "sha256": self.sha256,
               "parts": {str(n): e for n, e in self.parts.items()}}
        tmp = self.file.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, self.file)

    def remove(self) -> None:
        if self.file is not None:
            self.file.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path | None, upload_id: str, path: Path, size: int, sha256: str) -> Journal:
        if directory is None:
            raise ResumeError("This client keeps no upload journal (set upload_state_dir) so it cannot resume")
        file = directory / f"{seg(upload_id)}.json"
        try:
            doc = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ResumeError(f"No local record of upload {upload_id}; start a new upload") from exc
        if doc.get("size") != size or doc.get("sha256") != sha256:
            raise ResumeError(f"Upload {upload_id} was for other content ({doc.get('path')}); start a new upload")
        return cls(directory, Upload.from_dict(doc["upload"]), path, size, sha256,
                   {int(n): str(e) for n, e in doc.get("parts", {}).items()})

    def pending(self) -> list[UploadPart]:
        return [p for p in self.upload.parts or [] if p.part_number not in self.parts]

    def offset(self, part: UploadPart) -> int:
        return (part.part_number - 1) * int(self.upload.part_size or 0)

    def completed_parts(self) -> list[tuple[int, str]]:
        return sorted(self.parts.items())

    def sent_bytes(self) -> int:
        return sum(p.size for p in self.upload.parts or [] if p.part_number in self.parts)


def download_target(name: str, path: str | os.PathLike[str] | None) -> Path:
    """Where a download goes: ``path``, or ``name`` inside it when it is a directory (default: here)."""
    if path is None:
        return Path.cwd() / name
    target = Path(path)
    return target / name if target.is_dir() else target


def check_download(asset: Asset, size: int, sha256: str) -> None:
    if size != asset.size:
        raise ChecksumMismatch(f"Downloaded {size} bytes of asset {asset.id}, expected {asset.size}",
                               expected=str(asset.size), received=str(size))
    if sha256 != asset.sha256:
        raise ChecksumMismatch(f"Asset {asset.id} arrived with another sha256 than stored",
                               expected=asset.sha256, received=sha256)


# --- flows --------------------------------------------------------------------------------------------------
def put_file(session: Session, url: str, method: str, headers: Mapping[str, str], path: Path, offset: int,
             length: int, counter: ByteCounter) -> Flow[httpx.Response]:
    """Send ``length`` bytes of ``path`` from ``offset`` to a signed URL (no Authorization: the URL carries its
    own signature), streamed from disk; transient failures are retried from the start of the range."""
    start = counter.done
    attempt = 0
    while True:
        hdrs = {**headers, "Content-Length": str(length)}
        answer: httpx.Response | None
        try:
            answer = yield Send(method, url, content=file_range(path, offset, length, counter), headers=hdrs,
                                timeout=httpx.Timeout(60.0, write=300.0))
        except httpx.TransportError as exc:
            if attempt >= session.max_retries:
                raise transport_error(exc, url.split("?", 1)[0]) from exc
            answer = None
        if answer is not None and answer.status_code < 400:
            return answer
        if answer is not None and (answer.status_code not in (429, 500, 502, 503, 504)
                                   or attempt >= session.max_retries):
            raise ApiError.from_response(answer)
        counter.rewind(start)
        delay = (retry_after_of(answer) if answer is not None else None) or session.transfer_delay(attempt)
        attempt += 1
        yield Sleep(min(delay, session.max_retry_wait))


def upload_file(session: Session, path: str | os.PathLike[str], content_type: str | None, *, lifecycle: str,
                filename: str | None, multipart: bool | None, on_progress: BytesCallback | None,
                resume: str | None) -> Flow[Asset]:
    """Hash the file, open an upload (or pick up ``resume``), send the missing parts, complete it."""
    src = Path(path)
    size = src.stat().st_size
    sha256: str = yield Blocking(sha256_file, (src,))
    if resume:
        current: Upload = yield get_upload(resume)
        if current.status == "completed" and current.asset_id:
            done: Asset = yield get_asset(current.asset_id)
            if done.sha256 != sha256:
                raise ResumeError(f"Upload {resume} completed with other content; start a new upload")
            Journal(session.upload_state_dir, current, src, size, sha256).remove()
            return done
        if current.status != "pending":
            raise ResumeError(f"Upload {resume} is {current.status}; start a new upload")
        journal = Journal.load(session.upload_state_dir, resume, src, size, sha256)
    else:
        created: Upload = yield create_upload(content_type or guess_type(src), size, filename or src.name, sha256,
                                              lifecycle, multipart)
        journal = Journal(session.upload_state_dir, created, src, size, sha256)
        journal.save()
    upload = journal.upload
    counter = ByteCounter(size, on_progress)
    try:
        asset: Asset
        if upload.parts:
            counter.add(journal.sent_bytes())
            for part in journal.pending():
                answer = yield from put_file(session, part.url, part.method, part.headers, src,
                                             journal.offset(part), part.size, counter)
                etag = answer.headers.get("etag")
                if not etag:
                    raise ApiError(answer.status_code, "missing_etag", "Storage answered a part without an ETag")
                journal.parts[part.part_number] = etag
                journal.save()
            asset = yield complete_upload(upload.id, journal.completed_parts(), sha256)
        elif upload.put is not None:
            yield from put_file(session, upload.put.url, upload.put.method, upload.put.headers, src, 0, size,
                                counter)
            asset = yield complete_upload(upload.id, None, sha256)
        else:
            raise ApiError(0, "no_upload_url", "The server offered no upload URL")
    except ApiError as exc:
        if isinstance(exc, UploadFailed):
            raise
        raise UploadFailed(upload.id, exc) from exc
    except BaseException as exc:
        exc.add_note(f"reelforge upload id: {upload.id}")
        raise
    journal.remove()
    return asset


def download(asset_id: str, path: str | os.PathLike[str] | None,
             on_progress: BytesCallback | None) -> Flow[Path]:
    """Stream an asset to a temporary file beside the target, which it replaces only when size and sha256
    match the asset; otherwise `ChecksumMismatch` and the target is untouched."""
    asset: Asset = yield get_asset(asset_id)
    signed = asset.download
    if signed is None:
        raise ApiError(0, "no_download_url", "The server offered no download URL")
    target = download_target(Path(asset.filename).name if asset.filename else asset.id, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    counter = ByteCounter(asset.size, on_progress)
    digest = hashlib.sha256()
    try:
        try:
            answer: httpx.Response = yield Send(signed.method or "GET", signed.url, headers=signed.headers,
                                                stream=True)
            if answer.status_code >= 400:
                yield Close(answer, drain=True)
                raise ApiError.from_response(answer)
            blocks = yield Chunks(answer, "bytes")
            with open(tmp, "wb") as out:
                while (block := (yield Next(blocks))) is not None:
                    digest.update(block)
                    out.write(block)
                    counter.add(len(block))
            yield Close(answer)
        except httpx.TransportError as exc:
            raise transport_error(exc, signed.url.split("?", 1)[0]) from exc
        check_download(asset, counter.done, digest.hexdigest())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
