"""Cursor pagination of video lists: an opaque cursor holds the last row's sort key and id."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

from reelforge import errors
from reelforge.apps.mobs.repository import Video


@dataclass
class Page:
    items: list[Video]
    next_cursor: str | None


def encode_cursor(key: float | None, item_id: str) -> str:
    """The cursor that continues after the row with sort key `key` and id `item_id`."""
    raw = json.dumps([key, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """(key, id) of a cursor; None for none; `invalid_cursor` for anything else."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, item_id = json.loads(raw)
        if not isinstance(item_id, str) or not isinstance(key, int | float) or isinstance(key, bool):
            raise ValueError("bad cursor")
        return float(key), item_id
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise errors.ValidationFailed("Malformed cursor", code="invalid_cursor", field="cursor") from exc


def page(rows: list[Video], limit: int, key: Callable[[Video], float | None]) -> Page:
    """The first `limit` of `rows` (read with one extra row) and, when there are more, the next cursor."""
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor(key(rows[-1]), rows[-1].id)
    return Page(rows, nxt)
