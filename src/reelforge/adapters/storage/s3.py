"""Object storage on any S3 API (AWS S3, SeaweedFS, ...) through boto3.

The sha256 of each object the platform writes is kept as user metadata ``sha256``
(``x-amz-meta-sha256``). Objects that clients upload straight to S3 through presigned URLs have none
until ``verify`` (or ``complete_multipart``) reads them and records it.

Every write (PutObject, the transfer manager's uploads, CreateMultipartUpload, presigned PUTs, the copy that
records a sha256) carries the object's lifecycle class three ways: its storage class (domain/cloud.py
STORAGE_CLASS, unless storage classes are off), the ``reelforge-lifecycle`` tag the bucket's lifecycle rules
filter on, and user metadata ``lifecycle`` (read back by ``head``); plus the configured server-side encryption.
"""

from __future__ import annotations

import builtins
import hashlib
import itertools
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn
from urllib.parse import urlencode

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from reelforge.adapters.storage.common import (
    CHUNK_SIZE,
    LIFECYCLES,
    check_expiry,
    check_part_number,
    iter_chunks,
    normalize_etag,
    object_disposition,
    validate_content_type,
    validate_lifecycle,
    validate_metadata,
    verifying_stream,
)
from reelforge.domain.cloud import LIFECYCLE_TAG, STORAGE_CLASS
from reelforge.domain.keys import validate_key, validate_prefix
from reelforge.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    NotFound,
    ObjectNotFound,
    PayloadTooLarge,
    ReelforgeError,
    StorageError,
)
from reelforge.ports.storage import CompletedPart, ObjectInfo, SignedRequest

DEFAULT_CONTENT_TYPE = "application/octet-stream"
SHA256_META = "sha256"
LIFECYCLE_META = "lifecycle"
SSE_MODES = ("none", "AES256", "aws:kms")
# The request headers of the PutObject/CreateMultipartUpload parameters a presigned PUT signs.
_PARAM_HEADERS = {
    "ContentType": "Content-Type",
    "StorageClass": "x-amz-storage-class",
    "Tagging": "x-amz-tagging",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _raise_mapped(exc: Exception, key: str | None = None) -> NoReturn:
    """Translate a botocore failure into the platform's error tree."""
    if isinstance(exc, S3UploadFailedError):
        # boto3's transfer manager flattens the ClientError into a message; the cause keeps it.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ClientError):
            _raise_mapped(cause, key)
        raise StorageError(f"S3 upload failed: {exc}", key=key) from exc
    if isinstance(exc, ClientError):
        code = _error_code(exc)
        if code in _NOT_FOUND_CODES:
            raise ObjectNotFound(f"No object {key}", key=key) from exc
        if code == "NoSuchUpload":
            raise NotFound("Unknown multipart upload", code="upload_not_found") from exc
        if code == "InvalidPart":
            raise Conflict("A listed part was not uploaded or has another etag", code="invalid_part") from exc
        if code == "InvalidPartOrder":
            raise BadRequest("Parts must be listed in ascending order", code="invalid_part_order") from exc
        if code == "EntityTooSmall":
            raise BadRequest("A part other than the last is smaller than 5 MiB", code="part_too_small") from exc
        raise StorageError(f"S3 error {code or 'unknown'}: {exc}", key=key, s3_code=code) from exc
    raise StorageError(f"S3 unreachable: {exc}", key=key) from exc


class S3ObjectStore:
    """Objects in one S3 bucket; signed URLs are real S3 presigned URLs."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        addressing_style: str = "auto",
        multipart_threshold: int = 64 * 1024**2,
        part_size: int = 16 * 1024**2,
        create_bucket: bool = True,
        *,
        max_concurrency: int = 4,
        sse: str = "none",
        kms_key_id: str | None = None,
        storage_classes: bool = True,
        cdn: Any = None,
    ) -> None:
        """No network call happens here: the bucket is checked (and created) on first use.

        ``access_key``/``secret_key`` of None use boto3's default chain (environment, IAM role). ``sse`` is
        ``none``, ``AES256`` (SSE-S3) or ``aws:kms`` (SSE-KMS under ``kms_key_id``, or the account's AWS-managed
        key when None); ``storage_classes`` False writes every object in the bucket's default class.
        """
        if sse not in SSE_MODES:
            raise ValueError(f"sse must be one of {SSE_MODES}")
        if kms_key_id and sse != "aws:kms":
            raise ValueError("kms_key_id needs sse='aws:kms'")
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.storage_classes = storage_classes
        # A CdnUrlSigner (adapters/storage/cdn.py): inline downloads as signed CloudFront URLs.
        self.cdn = cdn
        self.bucket = bucket
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._create_bucket = create_bucket
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
            # The platform keeps its own sha256; the SDK's default CRC trailers (aws-chunked bodies)
            # are not understood by every S3-compatible server and would be a second checksum to carry.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=max(10, max_concurrency * 2),
        )
        session = boto3.session.Session()
        self.client: Any = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
        )

    # -- helpers -------------------------------------------------------------------------------
    def _ready(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise StorageError(f"S3 bucket {self.bucket}: {exc}", s3_code=_error_code(exc)) from exc
                if not self._create_bucket:
                    raise StorageError(f"S3 bucket {self.bucket} does not exist") from exc
                self._make_bucket()
            except BotoCoreError as exc:
                _raise_mapped(exc)
            self._bucket_ready = True

    def _make_bucket(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise StorageError(f"Cannot create S3 bucket {self.bucket}: {exc}",
                                   s3_code=_error_code(exc)) from exc
        except BotoCoreError as exc:
            _raise_mapped(exc)

    def write_args(self, lifecycle: str) -> dict[str, str]:
        """The PutObject parameters every write of a ``lifecycle`` object carries: storage class, lifecycle tag
        and server-side encryption (user metadata ``lifecycle`` goes with the rest of the metadata)."""
        lifecycle = validate_lifecycle(lifecycle)
        args = {"Tagging": urlencode({LIFECYCLE_TAG: lifecycle})}
        if self.storage_classes:
            args["StorageClass"] = STORAGE_CLASS[lifecycle]
        if self.sse != "none":
            args["ServerSideEncryption"] = self.sse
            if self.sse == "aws:kms" and self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
        return args

    @staticmethod
    def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
        metadata = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        sha = metadata.pop(SHA256_META, "")
        lifecycle = metadata.pop(LIFECYCLE_META, "")
        return ObjectInfo(
            key=key,
            size=int(response.get("ContentLength", 0)),
            sha256=sha,
            content_type=str(response.get("ContentType") or DEFAULT_CONTENT_TYPE),
            metadata=metadata,
            lifecycle=lifecycle if lifecycle in LIFECYCLES else "hot",
        )

    def _get(self, key: str) -> dict[str, Any]:
        self._ready()
        try:
            response: dict[str, Any] = self.client.get_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        return response

    def _upload_path(self, key: str, path: Path, sha256: str, size: int, content_type: str,
                     metadata: dict[str, str], lifecycle: str) -> ObjectInfo:
        """Upload a local file whose sha256 is already known (multipart above the threshold).

        By file name, not as a file object: the transfer manager reads each part of a named file from disk as
        it sends it, while from a file object it reads whole parts into memory (part size x concurrency).
        """
        self._ready()
        extra = {"ContentType": content_type,
                 "Metadata": {**metadata, SHA256_META: sha256, LIFECYCLE_META: lifecycle},
                 **self.write_args(lifecycle)}
        try:
            # The transfer manager aborts its multipart upload itself when a part fails.
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=self._transfer)
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            _raise_mapped(exc, key)
        return ObjectInfo(key=key, size=size, sha256=sha256, content_type=content_type, metadata=metadata,
                          lifecycle=lifecycle)

    # -- ObjectStore ---------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE,
                  metadata: dict[str, str] | None = None, *, lifecycle: str = "hot") -> ObjectInfo:
        """One PutObject with the sha256 in the object's metadata."""
        key = validate_key(key)
        content_type = validate_content_type(content_type)
        meta = validate_metadata(metadata)
        args = self.write_args(lifecycle)
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        self._ready()
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                   Metadata={**meta, SHA256_META: sha, LIFECYCLE_META: lifecycle}, **args)
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        return ObjectInfo(key=key, size=len(data), sha256=sha, content_type=content_type, metadata=meta,
                          lifecycle=lifecycle)

    def put_file(self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE,
                 metadata: dict[str, str] | None = None, *, lifecycle: str = "hot") -> ObjectInfo:
        """Hash the file, then upload it (multipart above ``multipart_threshold``, parts in parallel)."""
        key = validate_key(key)
        content_type = validate_content_type(content_type)
        meta = validate_metadata(metadata)
        lifecycle = validate_lifecycle(lifecycle)
        # S3 takes metadata when an upload starts, so the sha256 must be known before the first byte.
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            for chunk in iter_chunks(f, CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        return self._upload_path(key, Path(path), digest.hexdigest(), size, content_type, meta, lifecycle)

    def put_stream(self, key: str, stream: BinaryIO, content_type: str = DEFAULT_CONTENT_TYPE,
                   max_size: int | None = None, metadata: dict[str, str] | None = None, *,
                   lifecycle: str = "hot") -> ObjectInfo:
        """Spool the stream to a temp file on disk chunk by chunk, then upload the file.

        Spooling lets the size limit be enforced before anything reaches S3 (nothing to clean up) and
        gives the sha256 that must be set when the upload starts; memory stays at one chunk.
        """
        key = validate_key(key)
        content_type = validate_content_type(content_type)
        meta = validate_metadata(metadata)
        lifecycle = validate_lifecycle(lifecycle)
        fd, name = tempfile.mkstemp(prefix="reelforge-s3-", suffix=".spool")
        spool_path = Path(name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as spool:
                for chunk in iter_chunks(stream, CHUNK_SIZE):
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise PayloadTooLarge(f"Upload is larger than {max_size} bytes", max_size=max_size)
                    digest.update(chunk)
                    spool.write(chunk)
            return self._upload_path(key, spool_path, digest.hexdigest(), size, content_type, meta, lifecycle)
        finally:
            spool_path.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        """The whole object, checked against its recorded sha256 when there is one."""
        key = validate_key(key)
        response = self._get(key)
        info = self._info(key, response)
        try:
            data: bytes = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        if len(data) != info.size or (info.sha256 and hashlib.sha256(data).hexdigest() != info.sha256):
            raise ChecksumMismatch(f"Object {key} does not match its sha256", key=key)
        return data

    def open(self, key: str) -> BinaryIO:
        """A stream of the object; reading it to the end raises ChecksumMismatch if it was altered."""
        key = validate_key(key)
        response = self._get(key)
        info = self._info(key, response)
        return verifying_stream(response["Body"], key, info.sha256, info.size)

    def download_to(self, key: str, path: Path) -> ObjectInfo:
        """Stream the object to ``path`` atomically, verifying it; a bad object leaves ``path`` untouched."""
        key = validate_key(key)
        response = self._get(key)
        info = self._info(key, response)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name[:64]}.{uuid.uuid4().hex}.tmp"
        try:
            digest = hashlib.sha256()
            size = 0
            with open(tmp, "xb") as out:
                try:
                    for chunk in iter_chunks(response["Body"], CHUNK_SIZE):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                except (ClientError, BotoCoreError) as exc:
                    _raise_mapped(exc, key)
                out.flush()
                os.fsync(out.fileno())
            if size != info.size or (info.sha256 and digest.hexdigest() != info.sha256):
                raise ChecksumMismatch(f"Object {key} does not match its sha256", key=key)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ObjectInfo(key=key, size=size, sha256=digest.hexdigest(), content_type=info.content_type,
                          metadata=info.metadata, lifecycle=info.lifecycle)

    def head(self, key: str) -> ObjectInfo | None:
        """HeadObject, or None when the object does not exist."""
        key = validate_key(key)
        self._ready()
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            _raise_mapped(exc, key)
        except BotoCoreError as exc:
            _raise_mapped(exc, key)
        return self._info(key, response)

    def verify(self, key: str) -> ObjectInfo:
        """Read and hash the object; record the sha256 as metadata when none was recorded."""
        key = validate_key(key)
        response = self._get(key)
        info = self._info(key, response)
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in iter_chunks(response["Body"], CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        actual = digest.hexdigest()
        if info.sha256:
            if actual != info.sha256 or size != info.size:
                raise ChecksumMismatch(f"Object {key} does not match its sha256", key=key)
            return info
        # S3 metadata cannot be edited in place: copy the object onto itself with new metadata. The
        # ETag condition makes the copy fail if the object changed since it was hashed. A copy is a new write:
        # without them it would fall back to STANDARD, no encryption, and (as a multipart copy) no tags.
        extra: dict[str, Any] = {
            "Metadata": {**info.metadata, SHA256_META: actual, LIFECYCLE_META: info.lifecycle},
            "MetadataDirective": "REPLACE",
            "ContentType": info.content_type,
            "CopySourceIfMatch": response["ETag"],
            **self.write_args(info.lifecycle),
            "TaggingDirective": "REPLACE",
        }
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": key}, self.bucket, key, ExtraArgs=extra, Config=self._transfer
            )
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        return ObjectInfo(key=key, size=size, sha256=actual, content_type=info.content_type,
                          metadata=info.metadata, lifecycle=info.lifecycle)

    def delete(self, key: str) -> None:
        """DeleteObject, which S3 already treats as idempotent."""
        key = validate_key(key)
        self._ready()
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                _raise_mapped(exc, key)
        except BotoCoreError as exc:
            _raise_mapped(exc, key)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, page by page, in S3's lexicographic order."""
        prefix = validate_prefix(prefix)
        self._ready()
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents") or []:
                    yield str(item["Key"])
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc)

    # -- presigned URLs ------------------------------------------------------------------------
    def _presign(self, operation: str, params: dict[str, Any], expires_s: int) -> tuple[str, float]:
        self._ready()
        expires_s = check_expiry(expires_s)
        expires_at = time.time() + expires_s
        try:
            url = self.client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires_s
            )
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, params.get("Key"))
        return str(url), expires_at

    def presign_get(self, key: str, expires_s: int, filename: str | None = None,
                    content_type: str | None = None) -> SignedRequest:
        """A presigned GetObject URL; with ``filename`` S3 answers it as an attachment of that name, and an
        object that is not inert media (``content_type``; unknown counts as not) always as an attachment.
        S3 cannot add the CSP and ``nosniff`` headers the API's own route sends: keep the bucket on an origin
        of its own (its default), never behind the console's."""
        params: dict[str, Any] = {"Key": validate_key(key)}
        disposition = object_disposition(content_type, filename)
        if disposition:
            params["ResponseContentDisposition"] = disposition
        elif self.cdn is not None:
            # The distribution keys its cache on the path only: it serves inline objects, never a per-request name.
            cdn_url, cdn_expires = self.cdn.sign(params["Key"], expires_s)
            return SignedRequest(url=cdn_url, method="GET", expires_at=cdn_expires)
        url, expires_at = self._presign("get_object", params, expires_s)
        return SignedRequest(url=url, method="GET", expires_at=expires_at)

    def presign_put(self, key: str, content_type: str, max_size: int, expires_s: int, *,
                    lifecycle: str = "hot") -> SignedRequest:
        """A presigned PutObject URL that S3 accepts only with exactly these headers: the Content-Type, the
        lifecycle's storage class, tag and metadata, and the encryption (all signed; ``headers`` lists them).

        ``max_size`` cannot be enforced here: a presigned PUT carries no length condition (only a
        presigned POST policy could). The platform re-checks the size (``head``/``verify``) when the
        client reports the upload complete, and deletes an oversize object.
        """
        content_type = validate_content_type(content_type)
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        # Each parameter passed becomes a signed header of the URL, which the client must send as given.
        params: dict[str, Any] = {"ContentType": content_type, **self.write_args(lifecycle)}
        url, expires_at = self._presign(
            "put_object", {"Key": validate_key(key), "Metadata": {LIFECYCLE_META: lifecycle}, **params}, expires_s
        )
        headers = {_PARAM_HEADERS[name]: str(value) for name, value in params.items()}
        headers[f"x-amz-meta-{LIFECYCLE_META}"] = lifecycle
        return SignedRequest(url=url, method="PUT", headers=headers, expires_at=expires_at)

    # -- multipart -----------------------------------------------------------------------------
    def create_multipart(self, key: str, content_type: str, *, lifecycle: str = "hot") -> str:
        """CreateMultipartUpload with the lifecycle's class, tag and encryption; the sha256 is recorded when the
        upload completes."""
        key = validate_key(key)
        content_type = validate_content_type(content_type)
        args = self.write_args(lifecycle)
        self._ready()
        try:
            response = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type,
                                                           Metadata={LIFECYCLE_META: lifecycle}, **args)
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        return str(response["UploadId"])

    def presign_part(self, key: str, upload_id: str, part_number: int, expires_s: int, *,
                     max_size: int) -> SignedRequest:
        """A presigned UploadPart URL with ``Content-Length`` among its signed headers; the part's ETag comes
        back in the response's ETag header.

        A presigned URL can bind a length only by signing the header, so S3 accepts exactly ``max_size`` bytes
        (the part's size as the upload planned it) and refuses any other body with a signature error.
        """
        key = validate_key(key)
        check_part_number(part_number)
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        url, expires_at = self._presign(
            "upload_part",
            {"Key": key, "UploadId": upload_id, "PartNumber": part_number, "ContentLength": int(max_size)},
            expires_s,
        )
        return SignedRequest(url=url, method="PUT", expires_at=expires_at)

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes | BinaryIO,
                    max_size: int | None = None) -> CompletedPart:
        """UploadPart; the etag is returned without S3's quotes.

        A stream is spooled to a temp file on disk chunk by chunk (UploadPart needs its length before the
        first byte), then sent from there, so memory stays at one chunk whatever the part's size.
        """
        key = validate_key(key)
        check_part_number(part_number)
        if isinstance(data, bytes | bytearray | memoryview):
            if max_size is not None and len(data) > max_size:
                raise PayloadTooLarge(f"Part {part_number} is larger than {max_size} bytes",
                                      code="part_too_large", limit=max_size)
            return self._upload_part(key, upload_id, part_number, bytes(data), len(data))
        with tempfile.TemporaryFile() as spool:
            size = 0
            for chunk in iter_chunks(data, CHUNK_SIZE):
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise PayloadTooLarge(f"Part {part_number} is larger than {max_size} bytes",
                                          code="part_too_large", limit=max_size)
                spool.write(chunk)
            spool.seek(0)
            return self._upload_part(key, upload_id, part_number, spool, size)

    def _upload_part(self, key: str, upload_id: str, part_number: int, body: Any, size: int) -> CompletedPart:
        self._ready()
        try:
            response = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                               PartNumber=part_number, Body=body, ContentLength=size)
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        return CompletedPart(part_number=part_number, etag=normalize_etag(str(response["ETag"])))

    def complete_multipart(self, key: str, upload_id: str, parts: builtins.list[CompletedPart]) -> ObjectInfo:
        """CompleteMultipartUpload, then ``verify`` to hash the result and record its sha256.

        The extra read is the price of a checksum over parts that clients sent straight to S3.
        """
        key = validate_key(key)
        if not parts:
            raise BadRequest("A multipart upload needs at least one part", code="invalid_part")
        numbers = [check_part_number(p.part_number) for p in parts]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            raise BadRequest("Parts must be listed in ascending order", code="invalid_part_order")
        self._ready()
        listed = [{"PartNumber": p.part_number, "ETag": f'"{normalize_etag(p.etag)}"'} for p in parts]
        try:
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": listed})
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc, key)
        return self.verify(key)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; aborting an unknown or finished upload is not an error."""
        key = validate_key(key)
        self._ready()
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _error_code(exc) not in {"NoSuchUpload", "404", "NotFound"}:
                _raise_mapped(exc, key)
        except BotoCoreError as exc:
            _raise_mapped(exc, key)

    # -- bucket ----------------------------------------------------------------------------------
    def apply_lifecycle(self, rules: builtins.list[dict[str, Any]]) -> None:
        """PutBucketLifecycleConfiguration with ``rules`` (replacing the bucket's); StorageError with the
        server's code (``s3_code``) when it refuses them."""
        self._ready()
        try:
            self.client.put_bucket_lifecycle_configuration(Bucket=self.bucket,
                                                           LifecycleConfiguration={"Rules": rules})
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc)

    def lifecycle_rules(self) -> builtins.list[dict[str, Any]]:
        """The bucket's lifecycle rules as the server returns them ([] when it has none)."""
        self._ready()
        try:
            response = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) == "NoSuchLifecycleConfiguration":
                return []
            _raise_mapped(exc)
        except BotoCoreError as exc:
            _raise_mapped(exc)
        return list(response.get("Rules") or [])

    def ping(self) -> None:
        """HeadBucket (creating the bucket first when allowed); StorageError when unreachable."""
        try:
            self._ready()
            self.client.head_bucket(Bucket=self.bucket)
        except ReelforgeError as exc:
            raise StorageError(f"S3 bucket {self.bucket} is not reachable: {exc.message}") from exc
        except (ClientError, BotoCoreError) as exc:
            _raise_mapped(exc)
