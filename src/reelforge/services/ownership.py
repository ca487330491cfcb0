"""The one ownership rule: another user's object is answered exactly like a missing one."""

from __future__ import annotations

from typing import Protocol, TypeVar

from reelforge import errors
from reelforge.domain.types import Principal


class Owned(Protocol):
    @property
    def owner_id(self) -> str: ...


T = TypeVar("T", bound=Owned)


def owned(obj: T | None, principal: Principal, what: str = "Object", *, admin_ok: bool = False) -> T:
    """Return obj when principal owns it (or is an admin and admin_ok); else raise NotFound (never 403)."""
    if obj is None or (obj.owner_id != principal.user_id and not (admin_ok and principal.is_admin)):
        raise errors.NotFound(f"{what} not found", code=f"{what.lower().replace(' ', '_')}_not_found")
    return obj
