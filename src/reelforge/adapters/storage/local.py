"""Object storage on the local disk: the embedded stand-in for S3.

Layout under ``root``:

- ``<key>``: the object's bytes (keys are validated paths).
- ``.meta/<dirs of key>/.<name>.json``: size, sha256, content type, user metadata and lifecycle class (a
  local disk has no storage classes or bucket rules: the class is recorded so both adapters keep one
  contract). The leading dot keeps sidecar files and key directories apart (no key segment may start
  with ``.``).
- ``.multipart/<upload_id>/upload.json`` and ``.../<part number>``: multipart uploads in progress.
- ``.<random>.tmp`` beside a target: a write in progress, renamed into place when complete.

Signed URLs point at the API (``/v1/storage/objects/{key}``), which checks them with ``verify_signed``.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import hmac
import io
import itertools
import json
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

from reelforge.adapters.files import private_dir
from reelforge.adapters.storage.common import (
    CHUNK_SIZE,
    MIN_PART_SIZE,
    check_expiry,
    check_part_number,
    iter_chunks,
    normalize_content_type,
    normalize_etag,
    validate_content_type,
    validate_lifecycle,
    validate_metadata,
    verifying_stream,
)
from reelforge.domain.keys import validate_key, validate_prefix
from reelforge.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    Gone,
    InvalidKey,
    NotFound,
    ObjectNotFound,
    PayloadTooLarge,
    StorageError,
)
from reelforge.ports.storage import CompletedPart, ObjectInfo, SignedRequest

META_DIR = ".meta"
MULTIPART_DIR = ".multipart"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_SIGNATURE_VERSION = "reelforge-storage-v1"
_OP_METHODS = {"get": "GET", "put": "PUT", "part": "PUT"}
_OP_PARAMS = {"get": (), "put": ("ct", "max"), "part": ("upload_id", "part", "max")}
_LOCK_STRIPES = 64


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory holding it is flushed.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_put_headers(
    params: Mapping[str, str], content_type_header: str | None, content_length: int | None = None
) -> None:
    """Refuse an upload whose Content-Type differs from the signed one, or whose declared size is too big.

    ``params`` are those returned by ``verify_signed`` for an ``op=put`` URL. Raises
    ``Forbidden(code="content_type_mismatch")`` or ``PayloadTooLarge``; the size is enforced again while
    the body streams in (``put_stream(max_size=...)``), since Content-Length may be absent.
    """
    expected = params.get("ct", "")
    if not content_type_header or normalize_content_type(content_type_header) != normalize_content_type(
        expected
    ):
        raise Forbidden("Content-Type differs from the signed one", code="content_type_mismatch")
    if content_length is not None and "max" in params and content_length > int(params["max"]):
        raise PayloadTooLarge(f"Upload is larger than {params['max']} bytes")


class LocalObjectStore:
    """Objects as files under ``root``, with atomic writes, sha256 sidecars and HMAC-signed URLs."""

    name = "local"

    def __init__(
        self,
        root: Path,
        signing_secret: str,
        public_url: str,
        multipart_threshold: int = 64 * 1024**2,
        part_size: int = 16 * 1024**2,
        *,
        min_part_size: int = MIN_PART_SIZE,
        chunk_size: int = CHUNK_SIZE,
        fsync: bool = True,
    ) -> None:
        """``multipart_threshold``/``part_size`` tell services when to offer multipart uploads;
        ``min_part_size`` is S3's 5 MiB floor for every part but the last, kept for parity."""
        if not signing_secret:
            raise ValueError("signing_secret must not be empty")
        self.root = private_dir(Path(root))
        self._root_resolved = self.root.resolve()
        self._secret = signing_secret.encode()
        self.public_url = public_url.rstrip("/")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.min_part_size = min_part_size
        self._chunk_size = chunk_size
        self._fsync = fsync
        # Striped locks pair each data file with its sidecar in this process, so a reader never sees
        # one writer's bytes with another writer's checksum. Other processes rely on the rename order.
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    # -- paths ---------------------------------------------------------------------------------
    def _lock(self, key: str) -> threading.Lock:
        return self._locks[hash(key) % _LOCK_STRIPES]

    def _inside(self, path: Path) -> Path:
        # Resolving follows any symlink on the way, so a link planted under root cannot lead out of it.
        resolved = path.resolve()
        if resolved != self._root_resolved and not resolved.is_relative_to(self._root_resolved):
            raise InvalidKey("Object key resolves outside the storage root")
        return path

    def path_for(self, key: str) -> Path:
        """The file holding ``key`` (which may not exist), e.g. for tools that read files directly."""
        return self._inside(self.root / validate_key(key))

    def _meta_path(self, key: str) -> Path:
        parent, _, name = key.rpartition("/")
        return self._inside(self.root / META_DIR / parent / f".{name}.json")

    def _upload_dir(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or len(upload_id) != 32 or not all(
            c in "0123456789abcdef" for c in upload_id
        ):
            raise NotFound("Unknown multipart upload", code="upload_not_found")
        return self._inside(self.root / MULTIPART_DIR / upload_id)

    # -- low-level writes ----------------------------------------------------------------------
    def _temp_beside(self, target: Path) -> tuple[int, Path]:
        """Create an exclusive temp file in the target's directory (making the directory as needed)."""
        for _ in range(5):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise Conflict("Another object's key is a prefix of this key", code="key_conflict") from exc
            self._inside(target.parent)
            tmp = target.parent / f".{uuid.uuid4().hex}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileNotFoundError:
                # A concurrent delete pruned the empty directory between mkdir and open: go again.
                continue
            return fd, tmp
        raise StorageError(f"Could not create a temporary file in {target.parent}")

    def _spool(self, target: Path, chunks: Iterable[bytes]) -> Path:
        """Write `chunks` to a new temp file beside `target` (flushed; fsynced when configured) and return its path.
        A failure while writing (including one the iterator raises, such as a size limit) removes the file."""
        fd, tmp = self._temp_beside(target)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _replace(self, tmp: Path, target: Path) -> None:
        """Move a spooled file into place (the temp file is removed if that fails)."""
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self._fsync:
            _fsync_dir(target.parent)

    def _write_file_atomic(self, target: Path, data: bytes) -> None:
        self._replace(self._spool(target, [data]), target)

    def _write_object(
        self,
        key: str,
        stream: Any,
        content_type: str,
        metadata: dict[str, str] | None,
        max_size: int | None,
        lifecycle: str = "hot",
    ) -> ObjectInfo:
        key = validate_key(key)
        content_type = validate_content_type(content_type)
        meta = validate_metadata(metadata)
        lifecycle = validate_lifecycle(lifecycle)
        target = self.path_for(key)
        digest = hashlib.sha256()
        size = 0

        def checked() -> Iterator[bytes]:
            nonlocal size
            for chunk in iter_chunks(stream, self._chunk_size):
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(f"Upload is larger than {max_size} bytes", max_size=max_size)
                digest.update(chunk)
                yield chunk

        tmp = self._spool(target, checked())
        info = ObjectInfo(key=key, size=size, sha256=digest.hexdigest(), content_type=content_type, metadata=meta,
                          lifecycle=lifecycle)
        try:
            self._commit(key, tmp, target, info)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return info

    @staticmethod
    def _sidecar(info: ObjectInfo) -> bytes:
        return json.dumps(
            {"key": info.key, "size": info.size, "sha256": info.sha256, "content_type": info.content_type,
             "metadata": info.metadata, "lifecycle": info.lifecycle, "created_at": time.time()}
        ).encode()

    def _commit(self, key: str, tmp: Path, target: Path, info: ObjectInfo) -> None:
        sidecar = self._sidecar(info)
        meta_path = self._meta_path(key)
        with self._lock(key):
            if target.is_dir() and not target.is_symlink():
                raise Conflict("This key is a prefix of other objects' keys", code="key_conflict")
            try:
                os.replace(tmp, target)
            except (IsADirectoryError, NotADirectoryError) as exc:
                raise Conflict("Key conflicts with another object's key", code="key_conflict") from exc
            if self._fsync:
                _fsync_dir(target.parent)
            self._write_file_atomic(meta_path, sidecar)

    # -- low-level reads -----------------------------------------------------------------------
    def _read_sidecar(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self._meta_path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            return doc
        except ValueError as exc:
            raise StorageError(f"Metadata of {key} is unreadable", key=key) from exc

    def _open_raw(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """The object's open file and what the sidecar says about it, read together under the lock."""
        key = validate_key(key)
        path = self.path_for(key)
        with self._lock(key):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise ObjectNotFound(f"No object {key}", key=key) from exc
            except OSError as exc:
                # ELOOP: the key names a symlink, which this store never writes, so no object of ours.
                if exc.errno == errno.ELOOP:
                    raise ObjectNotFound(f"No object {key}", key=key) from exc
                raise StorageError(f"Cannot read {key}: {exc}", key=key) from exc
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise ObjectNotFound(f"No object {key}", key=key)
                doc = self._read_sidecar(key)
            except BaseException:
                os.close(fd)
                raise
        f = os.fdopen(fd, "rb")
        if doc is None:
            return f, ObjectInfo(key=key, size=st.st_size, sha256="", content_type=DEFAULT_CONTENT_TYPE)
        info = self._info_from(key, doc)
        if info.size != st.st_size:
            f.close()
            raise ChecksumMismatch(f"Object {key} has the wrong size", key=key)
        return f, info

    @staticmethod
    def _info_from(key: str, doc: dict[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(doc.get("size", 0)),
            sha256=str(doc.get("sha256", "")),
            content_type=str(doc.get("content_type") or DEFAULT_CONTENT_TYPE),
            metadata={str(k): str(v) for k, v in (doc.get("metadata") or {}).items()},
            lifecycle=str(doc.get("lifecycle") or "hot"),
        )

    def _prune(self, start: Path, stop: Path) -> None:
        # Empty directories left by deletes are removed; a concurrent writer recreates what it needs.
        current = start
        while current != stop and current.is_relative_to(stop):
            try:
                current.rmdir()
            except OSError:
                return
            current = current.parent

    # -- ObjectStore ---------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE,
                  metadata: dict[str, str] | None = None, *, lifecycle: str = "hot") -> ObjectInfo:
        """Store ``data`` atomically under ``key``; returns its size and sha256."""
        return self._write_object(key, io.BytesIO(data), content_type, metadata, None, lifecycle)

    def put_file(self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE,
                 metadata: dict[str, str] | None = None, *, lifecycle: str = "hot") -> ObjectInfo:
        """Copy a local file in (one pass: copy and hash together)."""
        validate_key(key)
        with open(path, "rb") as f:
            return self._write_object(key, f, content_type, metadata, None, lifecycle)

    def put_stream(self, key: str, stream: BinaryIO, content_type: str = DEFAULT_CONTENT_TYPE,
                   max_size: int | None = None, metadata: dict[str, str] | None = None, *,
                   lifecycle: str = "hot") -> ObjectInfo:
        """Store a stream chunk by chunk; past ``max_size`` raise PayloadTooLarge and keep nothing."""
        return self._write_object(key, stream, content_type, metadata, max_size, lifecycle)

    def get_bytes(self, key: str) -> bytes:
        """The whole object, after checking it against its recorded sha256."""
        f, info = self._open_raw(key)
        with f:
            data = f.read()
        if len(data) != info.size or (info.sha256 and hashlib.sha256(data).hexdigest() != info.sha256):
            raise ChecksumMismatch(f"Object {info.key} does not match its sha256", key=info.key)
        return data

    def open(self, key: str) -> BinaryIO:
        """A stream of the object; reading it to the end raises ChecksumMismatch if it was altered."""
        f, info = self._open_raw(key)
        return verifying_stream(f, info.key, info.sha256, info.size)

    def download_to(self, key: str, path: Path) -> ObjectInfo:
        """Copy the object to ``path`` atomically; a corrupt object leaves ``path`` untouched."""
        f, info = self._open_raw(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name[:64]}.{uuid.uuid4().hex}.tmp"
        try:
            digest = hashlib.sha256()
            size = 0
            with f, open(tmp, "xb") as out:
                for chunk in iter_chunks(f, self._chunk_size):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            if size != info.size or (info.sha256 and digest.hexdigest() != info.sha256):
                raise ChecksumMismatch(f"Object {info.key} does not match its sha256", key=info.key)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ObjectInfo(key=info.key, size=size, sha256=digest.hexdigest(),
                          content_type=info.content_type, metadata=info.metadata, lifecycle=info.lifecycle)

    def head(self, key: str) -> ObjectInfo | None:
        """What the sidecar records, or None when the object does not exist."""
        key = validate_key(key)
        path = self.path_for(key)
        with self._lock(key):
            try:
                st = os.stat(path, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not stat.S_ISREG(st.st_mode):
                return None
            doc = self._read_sidecar(key)
        if doc is None:
            return ObjectInfo(key=key, size=st.st_size, sha256="", content_type=DEFAULT_CONTENT_TYPE)
        return self._info_from(key, doc)

    def verify(self, key: str) -> ObjectInfo:
        """Re-read and hash the object; record the sha256 when the sidecar has none."""
        f, info = self._open_raw(key)
        digest = hashlib.sha256()
        size = 0
        with f:
            for chunk in iter_chunks(f, self._chunk_size):
                digest.update(chunk)
                size += len(chunk)
        actual = digest.hexdigest()
        if info.sha256:
            if actual != info.sha256 or size != info.size:
                raise ChecksumMismatch(f"Object {info.key} does not match its sha256", key=info.key)
            return info
        info = ObjectInfo(key=info.key, size=size, sha256=actual, content_type=info.content_type,
                          metadata=info.metadata, lifecycle=info.lifecycle)
        sidecar = self._sidecar(info)
        with self._lock(info.key):
            self._write_file_atomic(self._meta_path(info.key), sidecar)
        return info

    def delete(self, key: str) -> None:
        """Remove the object and its sidecar; deleting a missing object is not an error."""
        key = validate_key(key)
        path = self.path_for(key)
        meta_path = self._meta_path(key)
        with self._lock(key):
            try:
                if not path.is_dir() or path.is_symlink():
                    path.unlink(missing_ok=True)
            except NotADirectoryError:
                pass
            try:
                meta_path.unlink(missing_ok=True)
            except NotADirectoryError:
                pass
        self._prune(path.parent, self.root)
        self._prune(meta_path.parent, self.root / META_DIR)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` in lexicographic order, as S3 lists them; internals are skipped."""
        prefix = validate_prefix(prefix)
        # Start the walk at the deepest directory the prefix names, not at the root.
        base_rel = prefix.rpartition("/")[0]
        base = self.root / base_rel if base_rel else self.root
        try:
            self._inside(base)
        except InvalidKey:
            return iter(())
        return (key for key in self._walk(base, base_rel) if key.startswith(prefix))

    def _walk(self, directory: Path, rel: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a directory as "name/" makes depth-first order equal to lexicographic key order.
        items: list[tuple[str, os.DirEntry[str], bool]] = []
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue
            items.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        items.sort(key=lambda item: item[0])
        for _, entry, is_dir in items:
            key = f"{rel}/{entry.name}" if rel else entry.name
            if is_dir:
                yield from self._walk(Path(entry.path), key)
            else:
                yield key

    # -- signed URLs ---------------------------------------------------------------------------
    def _signature(self, method: str, key: str, params: Mapping[str, str]) -> str:
        canonical_query = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items())
        )
        canonical = "\n".join((_SIGNATURE_VERSION, method.upper(), key, canonical_query))
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    def _sign(self, method: str, key: str, params: dict[str, str], expires_s: int,
              headers: dict[str, str] | None = None) -> SignedRequest:
        expires_at = int(time.time()) + check_expiry(expires_s)
        params = {**params, "exp": str(expires_at)}
        params["sig"] = self._signature(method, key, params)
        url = f"{self.public_url}/v1/storage/objects/{quote(key, safe='/')}?{urlencode(params)}"
        return SignedRequest(url=url, method=method, headers=headers or {}, expires_at=float(expires_at))

    def verify_signed(self, method: str, key: str, params: Mapping[str, str],
                      now: float | None = None) -> dict[str, str]:
        """Check a signed URL's query; return its parameters (without ``sig``) when valid.

        Raises ``Forbidden(code="invalid_signature")`` for a missing or wrong signature, a method that
        does not fit the operation or missing parameters, and ``Gone(code="url_expired")`` once expired.
        HEAD is accepted wherever GET is.
        """
        key = validate_key(key)
        values = {str(k): str(v) for k, v in params.items()}
        signature = values.pop("sig", "")
        method = method.upper()
        if method == "HEAD":
            method = "GET"
        expected = self._signature(method, key, values)
        if not signature or not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise Forbidden("Invalid signature", code="invalid_signature")
        op = values.get("op", "")
        if _OP_METHODS.get(op) != method or any(name not in values for name in _OP_PARAMS[op]):
            raise Forbidden("Invalid signature", code="invalid_signature")
        try:
            expires_at = int(values.get("exp", ""))
        except ValueError as exc:
            raise Forbidden("Invalid signature", code="invalid_signature") from exc
        if (time.time() if now is None else now) > expires_at:
            raise Gone("Signed URL has expired", code="url_expired")
        return values

    def check_put_headers(self, params: Mapping[str, str], content_type_header: str | None,
                          content_length: int | None = None) -> None:
        """See the module-level ``check_put_headers``."""
        check_put_headers(params, content_type_header, content_length)

    def presign_get(self, key: str, expires_s: int, filename: str | None = None,
                    content_type: str | None = None) -> SignedRequest:
        """A URL on the API that serves the object until it expires (as an attachment with ``filename``).

        The API's route decides inline or attachment from the stored type when it serves (``object_headers``),
        so ``content_type`` is not needed in the URL."""
        params = {"op": "get"}
        if filename:
            params["filename"] = filename
        return self._sign("GET", validate_key(key), params, expires_s)

    def presign_put(self, key: str, content_type: str, max_size: int, expires_s: int, *,
                    lifecycle: str = "hot") -> SignedRequest:
        """A URL on the API for one PUT of at most ``max_size`` bytes with exactly this Content-Type; the
        lifecycle class is signed into it (``lc``) and recorded when the route stores the body."""
        content_type = validate_content_type(content_type)
        lifecycle = validate_lifecycle(lifecycle)
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        params = {"op": "put", "ct": content_type, "max": str(int(max_size)), "lc": lifecycle}
        return self._sign("PUT", validate_key(key), params, expires_s, {"Content-Type": content_type})

    # -- multipart -----------------------------------------------------------------------------
    def _load_upload(self, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        key = validate_key(key)
        directory = self._upload_dir(upload_id)
        try:
            doc = json.loads((directory / "upload.json").read_bytes())
        except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
            raise NotFound("Unknown multipart upload", code="upload_not_found") from exc
        if not isinstance(doc, dict) or doc.get("key") != key:
            raise NotFound("Unknown multipart upload", code="upload_not_found")
        return directory, doc

    def create_multipart(self, key: str, content_type: str, *, lifecycle: str = "hot") -> str:
        """Start a multipart upload; parts go to ``.multipart/<upload_id>/``."""
        key = validate_key(key)
        content_type = validate_content_type(content_type)
        lifecycle = validate_lifecycle(lifecycle)
        self.path_for(key)
        upload_id = uuid.uuid4().hex
        directory = self._upload_dir(upload_id)
        directory.mkdir(parents=True)
        doc = {"key": key, "content_type": content_type, "lifecycle": lifecycle, "created_at": time.time()}
        self._write_file_atomic(directory / "upload.json", json.dumps(doc).encode())
        return upload_id

    def presign_part(self, key: str, upload_id: str, part_number: int, expires_s: int, *,
                     max_size: int) -> SignedRequest:
        """A URL on the API for one PUT of part ``part_number``, of at most ``max_size`` bytes (signed)."""
        check_part_number(part_number)
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self._load_upload(key, upload_id)
        params = {"op": "part", "upload_id": upload_id, "part": str(part_number), "max": str(int(max_size))}
        return self._sign("PUT", key, params, expires_s)

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes | BinaryIO,
                    max_size: int | None = None) -> CompletedPart:
        """Store one part (replacing an earlier upload of the same number); the etag is its md5.

        The part is written to a temp file chunk by chunk and renamed into place, so a stream of any size
        costs one chunk of memory, and a part refused past ``max_size`` leaves nothing behind.
        """
        check_part_number(part_number)
        directory, _ = self._load_upload(key, upload_id)
        stream: Any = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
        target = directory / str(part_number)
        md5 = hashlib.md5()

        def checked() -> Iterator[bytes]:
            size = 0
            for chunk in iter_chunks(stream, self._chunk_size):
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(f"Part {part_number} is larger than {max_size} bytes",
                                          code="part_too_large", limit=max_size)
                md5.update(chunk)
                yield chunk

        self._replace(self._spool(target, checked()), target)
        return CompletedPart(part_number=part_number, etag=md5.hexdigest())

    def complete_multipart(self, key: str, upload_id: str, parts: builtins.list[CompletedPart]) -> ObjectInfo:
        """Join the listed parts in order into the object, atomically, then drop the upload."""
        directory, doc = self._load_upload(key, upload_id)
        if not parts:
            raise BadRequest("A multipart upload needs at least one part", code="invalid_part")
        numbers = [check_part_number(p.part_number) for p in parts]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            raise BadRequest("Parts must be listed in ascending order", code="invalid_part_order")
        part_paths = []
        for part in parts:
            part_path = directory / str(part.part_number)
            try:
                size = part_path.stat().st_size
            except FileNotFoundError as exc:
                raise Conflict(f"Part {part.part_number} was not uploaded", code="invalid_part") from exc
            if part is not parts[-1] and size < self.min_part_size:
                raise BadRequest(f"Part {part.part_number} is smaller than {self.min_part_size} bytes",
                                 code="part_too_small")
            part_paths.append(part_path)
        target = self.path_for(key)
        fd, tmp = self._temp_beside(target)
        try:
            digest = hashlib.sha256()
            total = 0
            with os.fdopen(fd, "wb") as out:
                for part, part_path in zip(parts, part_paths, strict=True):
                    md5 = hashlib.md5()
                    with open(part_path, "rb") as f:
                        for chunk in iter_chunks(f, self._chunk_size):
                            md5.update(chunk)
                            digest.update(chunk)
                            total += len(chunk)
                            out.write(chunk)
                    if md5.hexdigest() != normalize_etag(part.etag):
                        raise Conflict(f"Part {part.part_number} has a different etag", code="invalid_part")
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            info = ObjectInfo(key=key, size=total, sha256=digest.hexdigest(),
                              content_type=str(doc.get("content_type") or DEFAULT_CONTENT_TYPE),
                              lifecycle=str(doc.get("lifecycle") or "hot"))
            self._commit(key, tmp, target, info)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        shutil.rmtree(directory, ignore_errors=True)
        return info

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an upload and its parts; aborting an unknown or finished upload is not an error."""
        key = validate_key(key)
        try:
            directory, _ = self._load_upload(key, upload_id)
        except NotFound:
            return
        shutil.rmtree(directory, ignore_errors=True)

    def sweep(self, older_than_s: float = 24 * 3600) -> int:
        """Remove multipart uploads and temp files older than ``older_than_s`` (left by crashes or
        abandoned clients; S3 does this with an AbortIncompleteMultipartUpload lifecycle rule).

        Returns how many entries were removed.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        uploads = self.root / MULTIPART_DIR
        if uploads.is_dir():
            for entry in os.scandir(uploads):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for filename in filenames:
                if filename.startswith(".") and filename.endswith(".tmp"):
                    path = Path(dirpath) / filename
                    with contextlib.suppress(OSError):
                        if path.lstat().st_mtime < cutoff:
                            path.unlink()
                            removed += 1
        return removed

    def apply_lifecycle(self, rules: builtins.list[dict[str, Any]]) -> None:
        """A local disk has no bucket rules: the sweeper deletes expired temporary objects and abandoned uploads,
        and every object stays on the one disk whatever its class."""
        raise BadRequest("The local object store has no bucket lifecycle rules (its sweeper expires temporary "
                         "objects); apply them to an S3 bucket (storage.backend s3)", code="lifecycle_unsupported")

    def ping(self) -> None:
        """Raise StorageError unless a file can be written and removed under root."""
        probe = self.root / f".ping.{uuid.uuid4().hex}.tmp"
        try:
            if not self.root.is_dir():
                raise StorageError(f"Storage root {self.root} is not a directory")
            with open(probe, "xb") as f:
                f.write(b"ok")
            probe.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
            raise StorageError(f"Storage root {self.root} is not writable: {exc}") from exc
