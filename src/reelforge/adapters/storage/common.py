"""Helpers both storage adapters share, so that they refuse and accept exactly the same inputs."""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import quote

from reelforge.domain.types import Lifecycle
from reelforge.errors import BadRequest, ChecksumMismatch, ValidationFailed

CHUNK_SIZE = 1024 * 1024
# S3's own limits; the local store applies them too so that a client written against one works on both.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10_000
MAX_EXPIRY_S = 7 * 24 * 3600
MAX_METADATA_BYTES = 2048
# sha256: the platform's checksum; lifecycle: the object's lifecycle class (both kept beside the user's metadata).
RESERVED_METADATA = frozenset({"sha256", "lifecycle"})
LIFECYCLES = frozenset(lc.value for lc in Lifecycle)

_CONTENT_TYPE_RE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|\"[^\"\\\r\n]*\"))*"
)
# S3 lower-cases metadata names and sends values as HTTP headers: keep both to what survives the trip.
_META_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_META_VALUE_RE = re.compile(r"[\x20-\x7e]*")


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def iter_chunks(stream: _Readable, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Chunks of ``stream`` until EOF; short reads are normal for sockets and pipes."""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        yield bytes(chunk)


def validate_content_type(content_type: str) -> str:
    """A media type such as ``image/png`` or ``text/plain; charset=utf-8``; refuses header injection."""
    if not isinstance(content_type, str) or len(content_type) > 255 or not _CONTENT_TYPE_RE.fullmatch(
        content_type
    ):
        raise ValidationFailed("Invalid content type", code="invalid_content_type")
    return content_type


def normalize_content_type(content_type: str) -> str:
    """Lower-cased, with the spaces around ``;`` removed, for comparing what a client sent."""
    return ";".join(part.strip() for part in content_type.strip().lower().split(";"))


def validate_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """User metadata as S3 can store it: lower-case names, printable ASCII values, 2 KiB in all."""
    if not metadata:
        return {}
    out: dict[str, str] = {}
    total = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not _META_KEY_RE.fullmatch(name) or name in RESERVED_METADATA:
            raise ValidationFailed(f"Invalid metadata name {name!r}", code="invalid_metadata")
        if not isinstance(value, str) or not _META_VALUE_RE.fullmatch(value):
            raise ValidationFailed(f"Invalid metadata value for {name!r}", code="invalid_metadata")
        total += len(name) + len(value)
        out[name] = value
    if total > MAX_METADATA_BYTES:
        raise ValidationFailed("Metadata is larger than 2 KiB", code="invalid_metadata")
    return out


def validate_lifecycle(lifecycle: str) -> str:
    """``lifecycle`` when it names a lifecycle class (domain.types.Lifecycle); ValidationFailed otherwise."""
    if not isinstance(lifecycle, str) or lifecycle not in LIFECYCLES:
        raise ValidationFailed("Unknown lifecycle class", code="invalid_lifecycle", field="lifecycle")
    return str(lifecycle)


def check_part_number(part_number: int) -> int:
    """``part_number`` when it is 1..10000 (S3's range); BadRequest otherwise."""
    if isinstance(part_number, bool) or not isinstance(part_number, int) or not (
        1 <= part_number <= MAX_PART_NUMBER
    ):
        raise BadRequest(f"Part number must be between 1 and {MAX_PART_NUMBER}", code="invalid_part_number")
    return part_number


def check_expiry(expires_s: int) -> int:
    """``expires_s`` when it is 1 s..7 days (S3's SigV4 maximum); a bad value is a programming error."""
    if not isinstance(expires_s, int) or not (1 <= expires_s <= MAX_EXPIRY_S):
        raise ValueError(f"expires_s must be between 1 and {MAX_EXPIRY_S}")
    return expires_s


def normalize_etag(etag: str) -> str:
    """ETags without the quotes S3 puts around them, so both adapters hand out the same form."""
    return etag.strip().strip('"').lower()


# Media types a browser only ever displays (never runs) when a signed URL is opened as a page: these may be
# served inline, so the console can show images and play media. Everything else (HTML, SVG, XML, JavaScript,
# PDF, JSON, unknown types) is served as an attachment. See docs/decisions.md, "Stored objects are served
# inert".
INERT_TYPES = frozenset({
    "image/png", "image/jpeg", "image/webp", "image/gif", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mpeg", "audio/mp4", "audio/aac", "audio/ogg", "audio/webm", "audio/wav", "audio/x-wav", "audio/wave",
    "audio/flac", "audio/x-flac", "audio/opus",
    "text/plain", "text/vtt",
})
# On every object served: no script, no plugins, no requests, a unique origin; and no guessing of the type.
OBJECT_CSP = "sandbox; default-src 'none'"


def is_inert(content_type: str | None) -> bool:
    """Whether a stored object of this media type may be displayed inline (see INERT_TYPES)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() in INERT_TYPES


def object_disposition(content_type: str | None, filename: str | None) -> str | None:
    """The Content-Disposition of a stored object: an attachment when it has a name (the URL is a download) or
    is not inert media; None (inline) for unnamed inert media."""
    if filename:
        return content_disposition(filename)
    return None if is_inert(content_type) else "attachment"


def object_headers(content_type: str | None, filename: str | None) -> dict[str, str]:
    """The headers that keep a served object from running on the serving origin (the API's, the console's)."""
    headers = {"Content-Security-Policy": OBJECT_CSP, "X-Content-Type-Options": "nosniff"}
    disposition = object_disposition(content_type, filename)
    if disposition:
        headers["Content-Disposition"] = disposition
    return headers


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact name in RFC 5987 form."""
    cleaned = "".join(ch for ch in filename if ch.isprintable() and ch not in "\r\n")
    cleaned = cleaned.replace("/", "_").replace("\\", "_")[:255] or "download"
    ascii_name = (
        unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode().replace('"', "")
        or "download"
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(cleaned, safe='')}"


class _VerifyingRaw(io.RawIOBase):
    """Hashes what is read and raises ChecksumMismatch once the whole object has gone by."""

    def __init__(self, raw: Any, key: str, sha256: str, size: int | None) -> None:
        super().__init__()
        self._raw = raw
        self._key = key
        self._expected_sha = sha256
        self._expected_size = size
        self._hash = hashlib.sha256()
        self._seen = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        if not data:
            self._check()
            return 0
        n = len(data)
        if self._checked or (self._expected_size is not None and self._seen + n > self._expected_size):
            self._checked = True
            raise ChecksumMismatch(f"Object {self._key} is longer than recorded", key=self._key)
        view[:n] = data
        self._hash.update(data)
        self._seen += n
        # Check as soon as the recorded size is reached: readers that stop there never see EOF.
        if self._expected_size is not None and self._seen == self._expected_size:
            self._check()
        return n

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._expected_size is not None and self._seen != self._expected_size:
            raise ChecksumMismatch(f"Object {self._key} is shorter than recorded", key=self._key)
        if self._expected_sha and self._hash.hexdigest() != self._expected_sha:
            raise ChecksumMismatch(f"Object {self._key} does not match its sha256", key=self._key)

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                super().close()


def verifying_stream(raw: Any, key: str, sha256: str, size: int | None) -> BinaryIO:
    """Wrap ``raw`` (anything with ``read(n)``/``close()``) so that reading it to the end verifies it."""
    return cast(BinaryIO, io.BufferedReader(_VerifyingRaw(raw, key, sha256, size), buffer_size=CHUNK_SIZE))
