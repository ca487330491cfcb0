from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from reelforge.domain.types import JSON_DEPTH_CEILING, json_depth

# The largest row id or offset a query may name (a 32-bit INTEGER column); beyond it the drivers overflow.
MAX_ID = 2**31 - 1

# NUL cannot be stored in PostgreSQL text/JSONB, and a lone surrogate cannot be encoded as UTF-8 at all.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_storable(value: Any) -> None:
    if json_depth(value, JSON_DEPTH_CEILING) > JSON_DEPTH_CEILING:
        # Its own error type, which the problem handler answers with the code `input_too_deep`.
        raise PydanticCustomError("input_too_deep", "nests deeper than {max_depth} levels",
                                  {"max_depth": JSON_DEPTH_CEILING})
    stack = [value]  # iterative: JSON bodies may nest as deep as the parser allows
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if _UNSTORABLE.search(v):
                raise ValueError("must not contain NUL characters or unpaired surrogates")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError("numbers must be finite (no NaN or Infinity)")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)


class Strict(BaseModel):
    """Request models refuse unknown fields, and values the databases cannot store or the API could not serve
    back (checked at the edge)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check_storable(value)
        return value


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def iso(ts: float | None) -> str | None:
    import datetime as dt

    if ts is None:
        return None
    # Always with microseconds: isoformat() drops them when they are 0, giving two formats.
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
