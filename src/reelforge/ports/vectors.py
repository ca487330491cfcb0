"""Vector search contract: nearest neighbours by cosine similarity, with owner and visibility filters.

Filters are part of the search itself (SQL WHERE, a masked NumPy scan), never applied to a top-k list after
the fact, so a restrictive filter still returns k hits when k visible vectors exist, and nothing the viewer may
not see is ever ranked, counted or returned.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from reelforge.errors import ValidationFailed

Visibility = Literal["private", "public"]
VISIBILITIES: tuple[str, ...] = ("private", "public")

MAX_K = 1000
MAX_KEY_LEN = 64
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class InvalidVector(ValidationFailed, ValueError):
    """A vector, record or query the index cannot take (wrong dimension, NaN, zero, bad id or visibility).

    It is a ValueError for callers of the port and a ReelforgeError (422, code ``invalid_vector``) for the API.
    """

    code, title = "invalid_vector", "Invalid vector"


@dataclass(frozen=True)
class VectorRecord:
    id: str
    vector: np.ndarray[Any, Any]  # float32, shape (dim,)
    owner_id: str
    visibility: str = "private"
    model_version: str = ""


@dataclass(frozen=True)
class SearchFilter:
    # Sees own vectors (any visibility) and public ones; None = public only.
    viewer_id: str | None = None
    # Restrict to one owner.
    owner_id: str | None = None
    exclude_ids: tuple[str, ...] = ()
    # Only vectors of this model version.
    model_version: str | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity, higher is closer


@runtime_checkable
class VectorIndex(Protocol):
    """Vectors of one dimension, grouped in namespaces that never see each other."""

    name: str
    dim: int

    def upsert(self, namespace: str, records: Sequence[VectorRecord]) -> None:
        """Insert or replace records (every field of an existing id is overwritten); all or nothing."""
        ...

    def delete(self, namespace: str, ids: Sequence[str]) -> int:
        """Remove ids; returns how many existed."""
        ...

    def set_visibility(self, namespace: str, id: str, visibility: str) -> bool:
        """Change one record's visibility; False when the id does not exist."""
        ...

    def get(self, namespace: str, id: str) -> VectorRecord | None:
        """One record with its stored vector, or None."""
        ...

    def search(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
               flt: SearchFilter = SearchFilter()) -> list[Hit]:
        """Up to k records that pass `flt`, closest first (cosine similarity)."""
        ...

    async def asearch(self, namespace: str, vector: np.ndarray[Any, Any], k: int,
                      flt: SearchFilter = SearchFilter()) -> list[Hit]:
        """`search` from the event loop: without a thread where the index can answer without blocking it."""
        ...

    def count(self, namespace: str) -> int:
        """Records in the namespace, whatever their visibility."""
        ...

    def iter_all(self, namespace: str, *, flt: SearchFilter | None = None,
                 batch: int = 1000) -> Iterator[VectorRecord]:
        """Every record (ordered by id), or those passing `flt`, read `batch` rows at a time."""
        ...

    def close(self) -> None:
        """Release connections and memory."""
        ...


# Validation shared by every adapter ---------------------------------------------------------------------------


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise InvalidVector(f"namespace must be 1-64 characters of letters, digits, '_', '.', ':' or '-', "
                            f"got {namespace!r}")
    return namespace


def check_key(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LEN:
        raise InvalidVector(f"{what} must be a non-empty string of at most {MAX_KEY_LEN} characters, got {value!r}")
    return value


def check_visibility(visibility: str) -> str:
    if visibility not in VISIBILITIES:
        raise InvalidVector(f"visibility must be one of {', '.join(VISIBILITIES)}, got {visibility!r}")
    return visibility


def as_vector(vector: Any, dim: int, what: str = "vector") -> np.ndarray[Any, Any]:
    """A contiguous float32 copy of `vector`, refusing a wrong shape, NaN/inf and the zero vector."""
    try:
        arr = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidVector(f"{what} is not numeric: {exc}") from None
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise InvalidVector(f"{what} must have dimension {dim}, got shape {tuple(arr.shape)}",
                            expected_dim=dim, shape=list(arr.shape))
    if not np.all(np.isfinite(arr)):
        raise InvalidVector(f"{what} contains NaN or infinite values")
    norm = float(np.linalg.norm(arr))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidVector(f"{what} has zero length: cosine similarity is undefined for it")
    return np.ascontiguousarray(arr).copy()


def check_record(record: VectorRecord, dim: int) -> VectorRecord:
    """A validated record whose vector is a float32 copy."""
    if not isinstance(record, VectorRecord):
        raise InvalidVector(f"expected a VectorRecord, got {type(record).__name__}")
    check_key(record.id, "id")
    check_key(record.owner_id, "owner_id")
    check_visibility(record.visibility)
    if not isinstance(record.model_version, str) or len(record.model_version) > MAX_KEY_LEN:
        raise InvalidVector(f"model_version must be a string of at most {MAX_KEY_LEN} characters")
    vec = as_vector(record.vector, dim, f"vector of {record.id!r}")
    return VectorRecord(id=record.id, vector=vec, owner_id=record.owner_id, visibility=record.visibility,
                        model_version=record.model_version)


def check_records(records: Sequence[VectorRecord], dim: int) -> list[VectorRecord]:
    """Validated records; when an id repeats, the last one wins (as if upserted one after another)."""
    by_id: dict[str, VectorRecord] = {}
    for r in records:
        rec = check_record(r, dim)
        by_id.pop(rec.id, None)
        by_id[rec.id] = rec
    return list(by_id.values())


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= MAX_K:
        raise InvalidVector(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    return int(k)


def check_filter(flt: SearchFilter | None) -> SearchFilter | None:
    if flt is None:
        return None
    if not isinstance(flt, SearchFilter):
        raise InvalidVector(f"expected a SearchFilter, got {type(flt).__name__}")
    if isinstance(flt.exclude_ids, str):
        raise InvalidVector("exclude_ids must be a sequence of ids, not one string")
    return flt
