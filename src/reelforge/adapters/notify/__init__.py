"""Change feeds (ports/notify.py): in-process, PostgreSQL LISTEN/NOTIFY, Redis pub/sub."""

from __future__ import annotations

from collections.abc import Collection, Iterator

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; Redis has no such limit, but one message per
# few hundred keys keeps each one small.
MAX_PAYLOAD = 7000


def payloads(keys: Collection[str]) -> Iterator[str]:
    """Comma-separated keys, split so that no payload exceeds MAX_PAYLOAD bytes."""
    part: list[str] = []
    size = 0
    for k in sorted(set(keys)):
        if part and size + len(k) + 1 > MAX_PAYLOAD:
            yield ",".join(part)
            part, size = [], 0
        part.append(k)
        size += len(k) + 1
    if part:
        yield ",".join(part)


def parse(payload: str | bytes) -> list[str]:
    text = payload.decode() if isinstance(payload, bytes) else payload
    return [k for k in text.split(",") if k]
