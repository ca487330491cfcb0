"""The `reelforge` command: servers, migrations, accounts, models and the demo (local), and the commands that
talk to a running server (login, submit, jobs, upload, download, ...: see `reelforge.cli.remote`)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reelforge.cli import remote

if TYPE_CHECKING:
    from reelforge.config import Settings

app = typer.Typer(help="reelforge: generative-AI media platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
users_app = typer.Typer(help="Accounts.", no_args_is_help=True)
models_app = typer.Typer(help="Model adapters.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")
storage_app = typer.Typer(help="Object storage.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")

EXIT_USAGE = 2
EXIT_FAILED = 1


def _container(settings: Settings | None = None) -> Any:
    # Settings (pydantic-settings) load on demand: half a second that the remote commands do not need.
    from reelforge.config import get_settings
    from reelforge.container import Container
    from reelforge.observability import configure_logging

    s = settings or get_settings()
    configure_logging(s.log_level, s.log_json)
    # Everything a server process writes (database, objects, models, caches) is its own: owner-only.
    os.umask(0o077)
    return Container(s)


def _die(message: str, code: int = EXIT_FAILED) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _bootstrap(c: Any) -> None:
    """Migrate and create the admin account on first start. Its generated password is saved to an owner-only
    file in the data dir, and shown only on a terminal: a server's stdout usually goes to a log collector,
    where anyone who reads the logs would find it."""
    c.migrate()
    email = c.settings.auth.admin_email
    password = c.auth.ensure_admin(email)
    if not password:
        return
    path = c.settings.data_dir / "admin-password"
    _save_secret(path, password + "\n")
    if sys.stdout.isatty():
        typer.secho(f"Created admin account {email} with password: {password}", fg=typer.colors.GREEN, bold=True)
        typer.echo(f"(saved to {path}, readable only by you; this is shown once)")
    else:
        logging.getLogger("reelforge.cli").warning(
            "Created admin account %s; its password is in %s (readable only by this user)", email, path)


def _save_secret(path: Path, text: str) -> None:
    """Write `text` to a new file that only its owner can read (mode 600, never through a symlink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def _listen(host: str | None, port: int | None) -> tuple[Settings, socket.socket]:
    """The server's socket, bound before the container is built, and the settings for it: a derived
    public_url (the base of signed upload URLs) names the port really bound, also for ``--port 0``."""
    from reelforge.config import get_settings

    s = get_settings()
    host = s.host if host is None else host
    port = s.port if port is None else port
    bind_host = host.strip().removeprefix("[").removesuffix("]")
    sock = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind_host, port))
    except OSError as exc:
        sock.close()
        _die(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return s.serving(host, sock.getsockname()[1]), sock


def _serve(asgi_app: Any, sock: socket.socket) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(asgi_app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    c = _container()
    c.migrate()
    typer.echo(f"database at {c.settings.database_url.split('@')[-1]} is up to date")


@app.command()
def api(host: Annotated[str | None, typer.Option()] = None, port: Annotated[int | None, typer.Option()] = None,
        bootstrap: Annotated[bool, typer.Option(help="Migrate and create the admin first")] = True) -> None:
    """Serve the HTTP API and console."""
    from reelforge.api.app import create_app

    settings, sock = _listen(host, port)
    c = _container(settings)
    if bootstrap:
        _bootstrap(c)
    _serve(create_app(container=c), sock)


@app.command()
def worker(concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=64)] = 1,
           kinds: Annotated[list[str] | None, typer.Option("--kind", help="Only these job kinds")] = None) -> None:
    """Run jobs: claims from the queue, keeps leases alive; SIGTERM finishes or hands work back."""
    from reelforge.runtime.worker import Worker

    c = _container()
    c.migrate()
    Worker(c, concurrency=concurrency, kinds=kinds or None).run_forever()


@app.command()
def autoscale(interval: Annotated[float | None, typer.Option(help="Seconds between passes")] = None,
              once: Annotated[bool, typer.Option(help="One pass, print it as JSON, exit")] = False) -> None:
    """Scale workers per resource class (cpu, gpu) on queue depth, age and running jobs (settings `autoscale`):
    local worker processes, or an Auto Scaling group's desired capacity (--once: one pass, for a scheduled run).
    SIGTERM stops the local workers it started."""
    c = _container()
    if once and c.settings.autoscale.scaler == "local":
        typer.secho("--once needs autoscale.scaler=asg: local workers live only while `reelforge autoscale` runs",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_USAGE)
    c.migrate()
    scaler = c.scaler()
    scaling = c.autoscaler(scaler)
    if once:
        step = scaling.step()
        typer.echo(json.dumps({cls: {"load": step.loads[cls].__dict__, "before": step.before[cls],
                                     "desired": d.desired, "reason": d.reason}
                               for cls, d in step.decisions.items()}))
        return

    def on_signal(_signum: int, _frame: Any) -> None:
        scaling.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        scaling.run(interval or c.settings.autoscale.interval_s)
    finally:
        scaler.close()


@app.command()
def run(host: Annotated[str | None, typer.Option()] = None, port: Annotated[int | None, typer.Option()] = None,
        workers: Annotated[int, typer.Option(min=0, max=16, help="Worker processes")] = 1,
        concurrency: Annotated[int, typer.Option(min=1, max=64)] = 1) -> None:
    """API + worker(s) + console on one machine; SIGTERM or Ctrl-C stops everything.

    Workers that die are started again (with backoff). On SIGTERM/SIGINT the server stops, then every worker
    gets SIGTERM and finishes or hands back its jobs; one still running after its grace period is killed. The
    command exits after its workers: 0 when all stopped in time, 1 when one had to be killed. A second signal
    kills the workers at once.
    """
    from reelforge.api.app import create_app
    from reelforge.runtime.supervisor import Supervisor

    s, sock = _listen(host, port)
    c = _container(s)
    signals: list[int] = []
    server: Any = None
    sup: Supervisor | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        # Ours before and after uvicorn's (which it restores, then raises the signal it caught again): the
        # process must not die before its workers have stopped.
        signals.append(signum)
        if server is not None:
            server.should_exit = True
        if sup is not None and sup.stopping and len(signals) > 1:
            sup.kill()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    _bootstrap(c)
    # The workers sign URLs with the same base as the API they stand beside.
    env = {**os.environ, "REELFORGE_PUBLIC_URL": s.public_url}
    grace = s.jobs.shutdown_grace_s
    hostname = socket.gethostname()
    sup = Supervisor([sys.executable, "-m", "reelforge", "worker", "--concurrency", str(concurrency)], workers,
                     env=env, grace_s=grace + min(10.0, grace) + 5,
                     on_death=lambda pid, _code: c.jobs.worker_died(hostname, pid))
    c.supervisor = sup  # /readyz: this process is supposed to have live workers
    sup.start()
    typer.secho(f"reelforge on {s.public_url} (API docs: {s.public_url}/docs)", fg=typer.colors.GREEN)
    served = False
    try:
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(create_app(container=c), log_level="warning", access_log=False))
        if signals:
            server.should_exit = True
        server.run(sockets=[sock])
        served = bool(server.started)
    finally:
        graceful = sup.stop()
        typer.echo("stopped" if graceful else "stopped (a worker had to be killed)")
    if not served and not signals:
        raise typer.Exit(EXIT_FAILED)
    if not graceful:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def sweep() -> None:
    """Delete expired temporary assets, abandoned uploads and expired jobs now."""
    from reelforge.runtime.worker import Worker

    c = _container()
    typer.echo(json.dumps(Worker(c, maintenance=False).sweep()))


@users_app.command("create")
def users_create(email: str, password: Annotated[str | None, typer.Option(help="Prompted when omitted")] = None,
                 admin: Annotated[bool, typer.Option("--admin")] = False) -> None:
    from reelforge import errors
    from reelforge.domain.types import Role

    c = _container()
    c.migrate()
    pw = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        u = c.auth.register(email, pw, role=Role.admin if admin else Role.user)
    except errors.ReelforgeError as exc:
        _die(f"error: {exc.message} ({exc.code})", EXIT_USAGE)
    typer.echo(json.dumps({"id": u.id, "email": u.email, "role": u.role, "credits": u.credits}))


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    c = _container()
    rows = [{"id": u.id, "email": u.email, "role": u.role, "credits": u.credits, "disabled": u.disabled}
            for u in c.auth.list_users(limit=1000)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        typer.echo(f"{r['id']}  {r['email']:<32} {r['role']:<6} credits={r['credits']}"
                   + ("  (disabled)" if r["disabled"] else ""))


@users_app.command("grant")
def users_grant(email: str, amount: int, note: Annotated[str, typer.Option()] = "granted from the CLI") -> None:
    from reelforge.domain.types import CreditKind

    c = _container()
    with c.store.tx() as tx:
        u = tx.accounts.user_by_email(email.lower())
        if u is None:
            _die(f"no account {email}", EXIT_USAGE)
        entry = tx.credits.credit(u.id, amount, CreditKind.grant, note=note, require_balance=amount < 0)
    typer.echo(json.dumps({"email": email, "balance": entry.balance_after}))


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json")] = False,
                task: Annotated[str | None, typer.Option()] = None,
                url: remote.UrlOpt = None,
                local: Annotated[bool, typer.Option("--local", help="This machine's adapters, even when logged in")]
                = False) -> None:
    """Every model adapter, whether it can run, and why not.

    Asks the server when one is configured (--url, $REELFORGE_URL or $REELFORGE_API_KEY, or a saved
    `reelforge login`); otherwise, or with --local, lists the adapters of this machine's settings.
    """
    if not local and remote.server_configured(url):
        remote.models_list_remote(url, task, as_json)
        return
    c = _container()
    infos = c.models.list(task)
    if as_json:
        typer.echo(json.dumps([i.__dict__ for i in infos], default=str))
        return
    for i in infos:
        mark = "ok " if i.available else "-- "
        extra = " [test model]" if i.test_model else ""
        typer.echo(f"{mark}{i.task:<16} {i.name:<14}{extra} {'' if i.available else i.reason}")


@storage_app.command("apply-lifecycle")
def storage_apply_lifecycle(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the configuration; write nothing")] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Write the S3 bucket's lifecycle configuration that matches the lifecycle classes (replacing its rules).

    The rules filter on the lifecycle tag every write carries: temporary objects expire, hot and infrequent ones
    move to cheaper storage classes (left out while storage.s3_storage_classes is off), unfinished multipart
    uploads are aborted and old versions expire. Exit 2 on the local store, which has no bucket rules.
    """
    from reelforge import errors
    from reelforge.domain.cloud import lifecycle_rules

    c = _container()
    st = c.settings.storage
    body = {"Rules": lifecycle_rules(transitions=st.s3_storage_classes)}
    if dry_run:
        typer.echo(json.dumps(body) if as_json else json.dumps(body, indent=2))
        return
    try:
        c.objects.apply_lifecycle(body["Rules"])
    except errors.ReelforgeError as exc:
        hint = ""
        if exc.details.get("s3_code") == "NotImplemented" and st.s3_storage_classes:
            hint = ("\nhint: this server may not implement storage-class transitions; with "
                    "REELFORGE_STORAGE__S3_STORAGE_CLASSES=false the rules leave them out")
        _die(f"error: {exc.message} ({exc.code}){hint}",
             EXIT_USAGE if exc.code == "lifecycle_unsupported" else EXIT_FAILED)
    ids = [rule["ID"] for rule in body["Rules"]]
    if as_json:
        typer.echo(json.dumps({"bucket": st.s3_bucket, "applied": ids, "LifecycleConfiguration": body}))
    else:
        typer.echo(f"Applied {len(ids)} lifecycle rules to bucket {st.s3_bucket}: {', '.join(ids)}")


@app.command()
def demo(url: Annotated[str | None, typer.Option(help="A running server; default: start one here")] = None) -> None:
    """Run every available application once through the real API and worker and print where outputs are."""
    from reelforge.cli.demo import run_demo

    raise typer.Exit(run_demo(url))


remote.register(app)


def _register_applications() -> None:
    """Each installed application adds its own commands (and subcommands of the core's groups)."""
    from reelforge.applications import discover

    for application in discover():
        if application.cli is not None:
            application.cli(app, {"users": users_app, "models": models_app})


_register_applications()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
