"""Installed applications, found through the `reelforge.apps` entry-point group; the core never names one.

An application is a package (usually `reelforge.apps.<name>`, but any installed distribution can add one)
whose entry point names one `AppManifest`. Importing a manifest must stay cheap: everything heavy (routes,
pipelines, model adapters, services) is reached through the manifest's callables, which import their
modules when first called. See docs/architecture.md, "How to add an application".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

log = logging.getLogger("reelforge.apps")

GROUP = "reelforge.apps"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_LOCAL = re.compile(r"^/(?![/\\])[^\s\\]*$")  # a link to a page of this site, never to another origin

# The core's own settings sections and attributes: an application may not take one of these names.
RESERVED = frozenset({
    "database", "storage", "auth", "rate_limit", "cors", "jobs", "credits", "webhooks", "models", "otel", "metrics",
    "alarms", "vectors", "media", "calls", "mail", "oidc", "accounts", "data_dir", "public_url", "host", "port",
    "log_level", "log_json",
    "max_body_bytes",
    "extra_pipelines", "sweep_interval_s", "outbox_interval_s", "apps", "core", "system", "admin", "static",
})


@dataclass(frozen=True)
class NavItem:
    """One entry of the console's navigation. `section` groups entries under a heading."""

    page: str
    href: str
    label: str
    icon: str
    section: str
    admin: bool = False


@dataclass(frozen=True)
class Action:
    """A quick action: a button on the dashboard's welcome card (the first one is the primary button, and the
    empty job lists point to it)."""

    href: str
    label: str
    icon: str = "sparkles"


@dataclass(frozen=True)
class Tick:
    """Periodic work run by every worker's maintenance loop: `run(container, worker_id)` is called on every
    pass (a few times a second, on every worker), so it decides for itself whether its time has come and
    whether this worker wins the turn (for example with `tx.try_schedule`), and hands long work to a thread
    of its own: the same loop reaps leases and delivers events."""

    name: str
    run: Callable[[Any, str], None]


@dataclass(frozen=True)
class Call:
    """An interactive call: a function an application runs on a worker while an API request waits for its
    answer (a mask for a click, say), not a queued job. Workers keep model state between calls (loaded weights,
    per-session features), so the function runs where that state lives, through the worker's executor, and the
    API process never loads a model.

    `run(services, payload)` gets the worker's step services (as `ctx.services` in a step: the store, the
    object store, the model registry, `services.app(name)`) and the JSON payload the API sent; it returns a
    JSON-able dict, or raises a ReelforgeError, whose status, code and detail reach the API's caller as its
    problem. `name` is "<application>.<verb>". Calls with the same `affinity` key go to the same live worker
    while the set of live workers does not change, so a per-session cache on that worker is hit.

    Every worker of one installation serves the same calls (the installed applications' calls), so the API
    knows them from its own manifests: an unknown name is refused there (404 `unknown_call`) without reaching
    a worker. A call may run more than once: when the connection to a worker drops before its answer, the API
    tries the next worker, so `run` should be idempotent (a mask for a click is). `run` executes on a thread of
    the worker's executor, next to the steps of the jobs that worker runs; it must be thread-safe.

    `timeout_s`: how long the API waits for the answer (504 `call_timeout` after); None takes the settings'
    `calls.timeout_s`. The caller may ask for less, never for more than `calls.max_timeout_s`. A run that
    outlives its timeout is not interrupted (a thread cannot be): it finishes and its answer is dropped.
    See docs/architecture.md, "Interactive calls".
    """

    name: str
    run: Callable[[Any, dict[str, Any]], dict[str, Any]]
    resources: Any = None  # a domain.pipeline.Resources; None means the default Resources()
    timeout_s: float | None = None


def _none(*_: Any) -> tuple[()]:
    return ()


@dataclass(frozen=True)
class AppManifest:
    """What one application adds to the platform. Every field but `name` and `title` is optional.

    Callables taking `c` receive the process's Container; they run on first use, never at import.
    """

    name: str  # package, settings section (REELFORGE_<NAME>__...), service name, static/template namespace
    title: str
    description: str = ""
    # The settings section's model; `settings.<name>` holds it (read it with `app_settings`).
    settings: type[BaseModel] | None = None
    # Pipelines (job kinds) this application defines; given the Settings when it takes an argument, so that a
    # pipeline can reflect its settings (a Map's concurrency, say) in what it runs and exports.
    pipelines: Callable[..., Iterable[Any]] = _none
    # Model adapters, given the Settings; registered in the model registry under their task.
    models: Callable[[Any], Iterable[Any]] = _none
    # The application's service object, reachable as `c.app(name)` and in steps as `ctx.services.app(name)`.
    service: Callable[[Any], Any] | None = None
    # Per job kind, a check of a submitted input (`check(data)`), and one that also knows the submitter
    # (`check(principal, data)`); both raise a ReelforgeError to refuse the job.
    submit_checks: Callable[[Any], Mapping[str, Callable[[Any], None]]] = lambda c: {}
    owner_checks: Callable[[Any], Mapping[str, Callable[[Any, Any], None]]] = lambda c: {}
    # FastAPI routers mounted under /v1 (in the OpenAPI document), and the console's page routers.
    routers: Callable[[], Iterable[Any]] = _none
    console: Callable[[], Iterable[Any]] = _none
    nav: tuple[NavItem, ...] = ()
    # The dashboard: quick actions (buttons on its welcome card), cards (template names, each included once in
    # the dashboard's side column) and the static scripts the cards need (loaded once each on the dashboard;
    # a card's script adds its function to `RF.cards`, which the dashboard runs once the session is known).
    actions: tuple[Action, ...] = ()
    dashboard: tuple[str, ...] = ()
    dashboard_scripts: tuple[str, ...] = ()
    # Per job kind, the console page that fills its form from `?reuse=<job id>`: the job page's "Reuse
    # settings" link.
    reuse: Mapping[str, str] = field(default_factory=dict)
    # Folders of console templates and static files (file names must not collide with other apps').
    templates: Path | None = None
    static: Path | None = None
    ticks: tuple[Tick, ...] = ()
    # Interactive calls this application's workers answer (see `Call`), given the Settings.
    calls: Callable[[Any], Iterable[Call]] = _none
    # Event types this application emits (webhook subscriptions may name them).
    event_types: tuple[str, ...] = ()
    # The error codes this application's problems and job errors may carry beyond the platform's
    # (`errors.CODES`), each with its meaning; docs/errors.md documents them. An undocumented code is shown as
    # the generic one for its HTTP status.
    error_codes: Mapping[str, str] = field(default_factory=dict)
    # Alembic version folders for this application's own tables (applied with the core's on migrate).
    migrations: Path | None = None
    # The figures the admin statistics page shows for this application.
    admin_stats: Callable[[Any], Mapping[str, Any]] | None = None
    # Adds the application's commands to the `reelforge` CLI: given the Typer app and the core's command
    # groups by name ("users", "models"), for subcommands such as `reelforge models pull`.
    cli: Callable[[Any, Mapping[str, Any]], None] | None = None
    # `reelforge demo` runs this with an authenticated httpx client and an output folder; returns an exit code.
    demo: Callable[[Any, Path], int] | None = None
    # The account's own data in this application, for GET /v1/account/export and DELETE /v1/account (core routes
    # never know an application's tables). `account_export(c, account_id)` yields (name, value) pairs: each value
    # (JSON-able; an iterable of rows is written as a JSON list without being held in memory) becomes
    # `apps/<application>/<name>.json` in the export. `account_delete(c, account_id)` removes the account's rows
    # and objects of this application; the sweeper may call it again until it returns, so it must be idempotent.
    account_export: Callable[[Any, str], Iterable[tuple[str, Any]]] | None = None
    account_delete: Callable[[Any, str], None] | None = None
    # Run once when a worker starts, given the Container, in a thread of its own (the worker claims jobs
    # meanwhile): warm-up work such as loading models, so the first job does not pay for it. Errors are
    # logged, never raised; the application decides from its settings whether to do anything.
    on_worker_start: Callable[[Any], None] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class AppError(RuntimeError):
    """An installed application is malformed (bad name, a name taken twice, a reserved name)."""


def _validate(apps: list[AppManifest]) -> list[AppManifest]:
    seen: set[str] = set()
    for app in apps:
        if not isinstance(app, AppManifest):
            raise AppError(f"entry point of group {GROUP!r} must name an AppManifest, got {type(app).__name__}")
        if not _NAME.match(app.name):
            raise AppError(f"application name {app.name!r} must match {_NAME.pattern}")
        if app.name in RESERVED:
            raise AppError(f"application name {app.name!r} is reserved by the core")
        if app.name in seen:
            raise AppError(f"two installed applications are named {app.name!r}")
        seen.add(app.name)
        links = [a.href for a in app.actions] + list(app.reuse.values())
        bad = [href for href in links if not _LOCAL.match(href)]
        bad += [href for href in app.reuse.values() if "?" in href or "#" in href]  # the console adds ?reuse=
        if bad:
            raise AppError(f"application {app.name!r}: console links must be paths on this site, got {bad[0]!r}")
    return apps


def discover() -> list[AppManifest]:
    """Every installed application, sorted by name (so order never depends on the installer)."""
    found = []
    for ep in entry_points(group=GROUP):
        found.append(ep.load())
    return _validate(sorted(found, key=lambda a: a.name))


def app_settings(settings: Any, name: str) -> Any:
    """The settings section of application `name` (typed by the caller, which knows its own model)."""
    return getattr(settings, name)
