"""Opaque page cursors: the last row's sort key and id, for lists read newest (or best) first."""

from __future__ import annotations

import base64
import json

from reelforge import errors


def encode_cursor(key: float | None, item_id: str) -> str:
    """The cursor that continues after the row with sort key `key` and id `item_id`."""
    raw = json.dumps([key, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """(key, id) of a cursor; None for none; 422 `invalid_cursor` for anything else."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, item_id = json.loads(raw)
        if not isinstance(item_id, str) or not isinstance(key, int | float) or isinstance(key, bool):
            raise ValueError("bad cursor")
        return float(key), item_id
    except (ValueError, TypeError) as exc:  # JSON and Unicode decoding errors are ValueErrors
        raise errors.ValidationFailed("Malformed cursor", code="invalid_cursor", field="cursor") from exc
