"""Cursor pagination of video lists: an opaque cursor holds the last row's sort key and id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reelforge.apps.mobs.repository import Video
from reelforge.domain.cursors import decode_cursor, encode_cursor

__all__ = ["Page", "decode_cursor", "encode_cursor", "page"]


@dataclass
class Page:
    items: list[Video]
    next_cursor: str | None


def page(rows: list[Video], limit: int, key: Callable[[Video], float | None]) -> Page:
    """The first `limit` of `rows` (read with one extra row) and, when there are more, the next cursor."""
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor(key(rows[-1]), rows[-1].id)
    return Page(rows, nxt)
