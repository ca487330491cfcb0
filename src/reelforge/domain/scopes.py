"""API key scopes: what a limited key may call.

A key holds a list of scopes; a key without a list (every key made before scopes existed, and any key made
without them) may do everything its account may. The scopes:

- `read`: the safe methods (GET, HEAD, OPTIONS) on every route the key reaches;
- `write`: every method (a key that may change something may also read);
- `app:<name>`: the routes of application <name>. A key with one or more `app:` scopes reaches those
  applications' routes and the core's own routes (jobs, assets, uploads, credits, account), but no other
  application's routes, and the job kinds of no other application.

Which application a route belongs to is known from the application's registration (its manifest's routers),
never from the route's path: the core names no application.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
APP_PREFIX = "app:"
_APP_SCOPE = re.compile(r"^app:[a-z][a-z0-9_]{0,31}$")
MAX_SCOPES = 32


class ScopeError(ValueError):
    """A scope list that is not valid (the message says why)."""


def normalize(scopes: Iterable[str], apps: Collection[str]) -> list[str]:
    """A key's scopes, checked and sorted: known words only, installed applications only, `read` or `write`
    present (a key limited to applications still says whether it may write)."""
    out = sorted({s.strip() for s in scopes})
    if len(out) > MAX_SCOPES:
        raise ScopeError(f"at most {MAX_SCOPES} scopes")
    for s in out:
        if s in ("read", "write"):
            continue
        if not _APP_SCOPE.match(s):
            raise ScopeError(f"unknown scope {s!r} (read, write or app:<application>)")
        if s[len(APP_PREFIX):] not in apps:
            raise ScopeError(f"no installed application is named {s[len(APP_PREFIX):]!r}")
    if "read" not in out and "write" not in out:
        raise ScopeError("a key needs `read` or `write`")
    return out


def missing(scopes: frozenset[str] | None, method: str, app: str | None) -> str | None:
    """The scope a call lacks (None when the key may make it): `method` on a route of application `app`
    (None for a core route)."""
    if scopes is None:
        return None
    if method.upper() in READ_METHODS:
        if "read" not in scopes and "write" not in scopes:
            return "read"
    elif "write" not in scopes:
        return "write"
    if app is not None and has_app_limit(scopes) and APP_PREFIX + app not in scopes:
        return APP_PREFIX + app
    return None


def has_app_limit(scopes: frozenset[str] | None) -> bool:
    return scopes is not None and any(s.startswith(APP_PREFIX) for s in scopes)


def within(new: Collection[str] | None, held: frozenset[str] | None) -> bool:
    """Whether a key with scopes `new` would allow nothing that a caller holding `held` may not do."""
    if held is None:
        return True
    if new is None:
        return False
    reach_new = "write" if "write" in new else "read"
    if reach_new == "write" and "write" not in held:
        return False
    if has_app_limit(held):
        apps_new = {s for s in new if s.startswith(APP_PREFIX)}
        apps_held = {s for s in held if s.startswith(APP_PREFIX)}
        return bool(apps_new) and apps_new <= apps_held
    return True
