"""Commands that talk to a running server through `reelforge.client`: login, submit, jobs, upload, download.

The server and the credentials come from, in order: ``--url`` / ``$REELFORGE_URL`` / ``$REELFORGE_API_KEY``,
then the file `reelforge login` writes (``$XDG_CONFIG_HOME/reelforge/credentials.json``, else
``~/.config/reelforge/credentials.json``, mode 600). Saved tokens are only ever sent to the server they
came from.

Exit codes scripts can rely on: 0 ok; 1 the job failed, died or was cancelled, or the server failed (5xx);
2 bad usage or input the server refused (4xx); 3 not found; 4 not logged in, or refused (401/403);
5 the server cannot be reached; 6 ``--timeout`` passed before the job ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from reelforge.client import ApiError, Client, Job, Progress

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_UNREACHABLE = 5
EXIT_TIMEOUT = 6

DEFAULT_URL = "http://127.0.0.1:8000"

UrlOpt = Annotated[str | None, typer.Option("--url", help="Server URL (default: $REELFORGE_URL, else the one "
                                                          "from `reelforge login`)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout")]

jobs_app = typer.Typer(help="Jobs on the server: list, show, wait, cancel, retry, logs.", no_args_is_help=True)
assets_app = typer.Typer(help="Stored assets on the server.", no_args_is_help=True)


# --- credentials ---------------------------------------------------------------------------------------------
def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "reelforge"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "reelforge"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def load_credentials() -> dict[str, Any]:
    try:
        doc = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def save_credentials(doc: dict[str, Any]) -> Path:
    """Atomically, readable by the user only (the directory too)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def _norm(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"  # `--url localhost:8000` means http


def server_configured(url: str | None) -> bool:
    """Whether a command should ask a server (``--url``, the environment, or a saved login) or work locally."""
    return bool(url or os.environ.get("REELFORGE_URL") or os.environ.get("REELFORGE_API_KEY")
                or load_credentials().get("url"))


def connect(url: str | None = None, *, require_auth: bool = True) -> Client:
    """A client for the chosen server, with the credentials that belong to it."""
    from reelforge.client import Client, TokenPair

    creds = load_credentials()
    target = _norm(url or os.environ.get("REELFORGE_URL") or creds.get("url") or DEFAULT_URL)
    own = bool(creds.get("url")) and _norm(str(creds["url"])) == target
    env_key = os.environ.get("REELFORGE_API_KEY") or None

    def keep(pair: TokenPair) -> None:
        # Refresh tokens rotate: the new pair must be saved, or the next command would be logged out.
        doc = load_credentials()
        if _norm(str(doc.get("url", ""))) == target:
            doc.update(access_token=pair.access_token, refresh_token=pair.refresh_token,
                       expires_at=time.time() + float(pair.expires_in or 0))
            save_credentials(doc)

    if env_key:
        client = Client(target, api_key=env_key, upload_state_dir=state_dir() / "uploads")
    elif own and creds.get("api_key"):
        client = Client(target, api_key=str(creds["api_key"]), upload_state_dir=state_dir() / "uploads")
    elif own and (creds.get("access_token") or creds.get("refresh_token")):
        client = Client(target, access_token=creds.get("access_token"), refresh_token=creds.get("refresh_token"),
                        token_expires_at=creds.get("expires_at"), on_tokens=keep,
                        upload_state_dir=state_dir() / "uploads")
    else:
        # No credentials for this server: an empty api_key keeps the client from reading the environment.
        client = Client(target, api_key="", upload_state_dir=state_dir() / "uploads")
        if require_auth:
            hint = (f"saved login is for {creds['url']}; " if creds.get("url") else "")
            _die(f"error: not logged in to {target} ({hint}run `reelforge login --url {target}` "
                 "or set REELFORGE_API_KEY)", EXIT_AUTH)
    return client


# --- output and errors ---------------------------------------------------------------------------------------
def _die(message: str, code: int) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=str))


def exit_code_for(exc: ApiError) -> int:
    from reelforge.client import ServerUnreachable

    if isinstance(exc, ServerUnreachable):
        return EXIT_UNREACHABLE
    if exc.status in (401, 403):
        return EXIT_AUTH
    if exc.status == 404:
        return EXIT_NOT_FOUND
    if 400 <= exc.status < 500:
        return EXIT_USAGE
    return EXIT_FAILED


@contextlib.contextmanager
def handled(as_json: bool = False) -> Iterator[None]:
    """Turns client errors into a clear message on stderr (the problem body on stdout with --json) and the
    documented exit code."""
    from reelforge.client import ApiError, ResumeError, ServerUnreachable, UploadFailed, WaitTimeout

    try:
        yield
    except ApiError as exc:
        code = exit_code_for(exc)
        if as_json:
            _print_json({"error": exc.problem or {"status": exc.status, "code": exc.code, "detail": exc.detail}})
        where = f"HTTP {exc.status}, " if exc.status else ""
        lines = [f"error: {exc.detail} ({where}{exc.code})"]
        lines += [f"  {e.get('field') or 'request'}: {e.get('message')}" for e in exc.errors]
        if isinstance(exc, ServerUnreachable):
            lines.append("  is the server running? (`reelforge run` starts one)")
        elif code == EXIT_AUTH and exc.status == 401:
            lines.append("  run `reelforge login` (or set REELFORGE_API_KEY)")
        if isinstance(exc, UploadFailed):
            lines.append(f"  resume with: reelforge upload FILE --resume {exc.upload_id}")
        if exc.request_id:
            lines.append(f"  request id: {exc.request_id}")
        _die("\n".join(lines), code)
    except WaitTimeout as exc:
        if as_json:
            _print_json(exc.job.to_dict())
        _die(f"timed out: {exc}", EXIT_TIMEOUT)
    except ResumeError as exc:
        _die(f"error: {exc}", EXIT_USAGE)
    except OSError as exc:  # the local file side: cannot read, cannot write
        _die(f"error: {exc}", EXIT_USAGE)


def _job_exit(job: Job) -> int:
    return EXIT_OK if job.ok else EXIT_FAILED


def _show_job(job: Job) -> None:
    p = job.progress
    rows = [("id", job.id), ("kind", job.kind), ("status", job.status),
            ("progress", f"{p.fraction:.0%} {p.message}".rstrip()), ("attempt", f"{job.attempt}/{job.max_attempts}"),
            ("credits", f"{job.credits} ({job.credits_state})"), ("created", job.created_at or "-"),
            ("started", job.started_at or "-"), ("finished", job.finished_at or "-")]
    if job.error is not None:
        rows.append(("error", f"{job.error.code}: {job.error.message or ''}".rstrip(": ")))
    for name, value in rows:
        typer.echo(f"{name:<9} {value}")
    if job.outputs is not None:
        typer.echo(f"{'outputs':<9} {json.dumps(job.outputs, default=str)}")


def _stderr_tty() -> bool:
    return sys.stderr.isatty()


class JobProgressView:
    """Job progress on stderr: a live bar on a terminal, one line per change otherwise (logs, CI)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._rich: Any = None
        self._task: Any = None
        self._last = ""

    def __enter__(self) -> JobProgressView:
        if _stderr_tty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                  TimeElapsedColumn(), TextColumn("{task.fields[message]}"),
                                  console=Console(stderr=True))
            self._rich.start()
            self._task = self._rich.add_task(f"job {self.job_id[:12]}", total=1.0, message="queued")
        return self

    def __call__(self, p: Progress) -> None:
        if self._rich is not None:
            self._rich.update(self._task, completed=p.fraction, message=f"{p.status} {p.message}".rstrip())
            return
        line = f"{p.status} {p.fraction:.0%} {p.message}".rstrip()
        if line != self._last:
            self._last = line
            typer.echo(f"job {self.job_id}: {line}", err=True)

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()


class BytesProgressView:
    """Transfer progress on stderr: a live bar on a terminal, a line per 25% otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self._rich: Any = None
        self._task: Any = None
        self._step = -1

    def __enter__(self) -> BytesProgressView:
        if _stderr_tty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
            self._rich.start()
            self._task = self._rich.add_task(self.label, total=self.total)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._rich is not None:
            self._rich.update(self._task, completed=done, total=total)
            return
        step = (done * 4 // total) if total else 4
        if step != self._step:
            self._step = step
            typer.echo(f"{self.label}: {done}/{total} bytes ({step * 25}%)", err=True)

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()


# --- input -------------------------------------------------------------------------------------------------
def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; the value is JSON when it parses as JSON, else the text. ``a.b=1`` nests."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--set")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for name in parents:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise typer.BadParameter(f"{key!r}: {name!r} is already set to a value", param_hint="--set")
            node = child
        node[leaf] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_input(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="--input") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{path} is not JSON: {exc}", param_hint="--input") from exc
    if not isinstance(doc, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object", param_hint="--input")
    return doc


# --- commands ----------------------------------------------------------------------------------------------
def login(url: UrlOpt = None,
          email: Annotated[str | None, typer.Option(help="Prompted when omitted")] = None,
          password: Annotated[str | None, typer.Option(help="Prompted when omitted (hidden)")] = None,
          password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")]
          = False,
          api_key: Annotated[str | None, typer.Option("--api-key", help="Use an API key instead of a password")]
          = None,
          as_json: JsonOpt = False) -> None:
    """Sign in to a server and save its URL and tokens (or API key) for the other commands."""
    from reelforge.client import Client

    target = _norm(url or os.environ.get("REELFORGE_URL") or load_credentials().get("url") or DEFAULT_URL)
    with handled(as_json):
        if api_key:
            with Client(target, api_key=api_key) as c:
                me = c.auth.me()
            doc: dict[str, Any] = {"url": target, "email": me.email, "api_key": api_key}
        else:
            email = email or typer.prompt("Email")
            if password_stdin:
                password = sys.stdin.readline().rstrip("\r\n")
            password = password or typer.prompt("Password", hide_input=True)
            with Client(target, api_key="") as c:
                pair = c.auth.login(email, password)
                me = c.auth.me()
            doc = {"url": target, "email": me.email, "access_token": pair.access_token,
                   "refresh_token": pair.refresh_token, "expires_at": time.time() + float(pair.expires_in)}
    path = save_credentials(doc)
    if as_json:
        _print_json({"url": target, "user": me.to_dict(), "credentials": str(path)})
    else:
        typer.echo(f"Logged in to {target} as {me.email} (credentials in {path})")


def logout() -> None:
    """Forget the saved login."""
    path = credentials_path()
    existed = path.exists()
    path.unlink(missing_ok=True)
    typer.echo("Logged out" if existed else "Not logged in")


def whoami(url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """The account the saved credentials belong to."""
    with handled(as_json), connect(url) as c:
        me = c.auth.me()
    if as_json:
        _print_json(me.to_dict())
    else:
        typer.echo(f"{me.email} ({me.role}) on {c.base_url}: {me.credits} credits")


def submit(kind: Annotated[str, typer.Argument(help="Job kind, e.g. system.noop")],
           input_file: Annotated[str | None, typer.Option("--input", "-i", help="JSON file with the input ('-' reads "
                                                                               "stdin)")] = None,
           sets: Annotated[list[str] | None, typer.Option("--set", "-s", help="key=value (repeatable; JSON values "
                                                                            "parsed, a.b=1 nests)")] = None,
           wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the job to its end")] = False,
           timeout: Annotated[float | None, typer.Option(help="With --wait: give up after this many seconds")] = None,
           priority: Annotated[int, typer.Option(min=-100, max=100)] = 0,
           callback_url: Annotated[str | None, typer.Option("--callback-url")] = None,
           idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
           url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Submit a job. Prints its id (or the job as JSON); with --wait, follows it and exits 1 unless it succeeds."""
    body = _merge(read_input(input_file), parse_sets(sets or []))
    with handled(as_json), connect(url) as c:
        handle = c.jobs.submit(kind, body, priority=priority, callback_url=callback_url,
                               idempotency_key=idempotency_key)
        if not wait:
            if as_json:
                _print_json(handle.job.to_dict())
            else:
                typer.echo(handle.id)
            return
        with JobProgressView(handle.id) as view:
            job = handle.wait(timeout, on_progress=view)
    _finish(job, as_json)


def _finish(job: Job, as_json: bool) -> None:
    if as_json:
        _print_json(job.to_dict())
    else:
        _show_job(job)
    raise typer.Exit(_job_exit(job))


@jobs_app.command("list")
def jobs_list(status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, cancelled, "
                                                                "dead")] = None,
              kind: Annotated[str | None, typer.Option()] = None,
              limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
              cursor: Annotated[str | None, typer.Option(help="next_cursor of an earlier page")] = None,
              url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Your jobs, newest first."""
    with handled(as_json), connect(url) as c:
        page = c.jobs.list(status=status, kind=kind, limit=limit, cursor=cursor)
    if as_json:
        _print_json(page.to_dict())
        return
    if not page.data:
        typer.echo("no jobs")
    for j in page.data:
        typer.echo(f"{j.id}  {j.kind:<18} {j.status:<10} {j.progress.fraction:>4.0%}  {j.created_at or ''}")
    if page.next_cursor:
        typer.echo(f"(more: --cursor {page.next_cursor})", err=True)


@jobs_app.command("show")
def jobs_show(job_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """One job: status, progress, outputs or error."""
    with handled(as_json), connect(url) as c:
        job = c.jobs.get(job_id)
    if as_json:
        _print_json(job.to_dict())
    else:
        _show_job(job)


@jobs_app.command("wait")
def jobs_wait(job_id: str, timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds "
                                                                                "(exit 6)")] = None,
              url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Follow a job to its end (progress on stderr); exits 1 unless it succeeded."""
    with handled(as_json), connect(url) as c:
        handle = c.jobs.handle(job_id)
        with JobProgressView(job_id) as view:
            job = handle.wait(timeout, on_progress=view)
    _finish(job, as_json)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a job (queued ones end at once, running ones within a heartbeat); credits are refunded."""
    with handled(as_json), connect(url) as c:
        job = c.jobs.cancel(job_id)
    if as_json:
        _print_json(job.to_dict())
    else:
        typer.echo(f"{job.id} {job.status}{' (cancel requested)' if job.cancel_requested and not job.done else ''}")


@jobs_app.command("retry")
def jobs_retry(job_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Run a failed, dead or cancelled job again, as a new job; prints the new job's id."""
    with handled(as_json), connect(url) as c:
        job = c.jobs.retry(job_id)
    if as_json:
        _print_json(job.to_dict())
    else:
        typer.echo(job.id)


def _event_line(ts: str | None, type_: str, path: str | None, details: Any) -> str:
    extra = json.dumps(details, default=str) if details else ""
    return f"{ts or '-'}  {type_:<20} {path or '':<16} {extra}".rstrip()


@jobs_app.command("logs")
def jobs_logs(job_id: str,
              follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new events until the job ends")]
              = False,
              url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """A job's execution history (steps started, succeeded, retried, ...). JSON is one event per line."""
    with handled(as_json), connect(url) as c:
        if not follow:
            hist = c.jobs.history(job_id)
            for e in hist.events:
                if as_json:
                    _print_json(e.to_dict())
                else:
                    typer.echo(_event_line(e.ts, e.type, e.path, e.details))
            return
        final: dict[str, Any] | None = None
        for ev in c.jobs.events(job_id, timeout=3600):
            if ev.event == "history":
                if as_json:
                    _print_json({"id": int(ev.id) if ev.id and ev.id.isdigit() else ev.id, **ev.data})
                else:
                    typer.echo(_event_line(ev.data.get("ts"), str(ev.data.get("type")), ev.data.get("path"),
                                           ev.data.get("details")))
            elif ev.event == "end":
                final = ev.data
        if final is None or "status" not in final:
            final = c.jobs.get(job_id).to_dict()
    if not as_json:
        typer.echo(f"job {job_id} {final.get('status')}", err=True)
    raise typer.Exit(EXIT_OK if final.get("status") == "succeeded" else EXIT_FAILED)


def upload(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
           lifecycle: Annotated[str, typer.Option(help="hot, infrequent, archive or temporary")] = "hot",
           content_type: Annotated[str | None, typer.Option("--content-type", help="Default: from the name")]
           = None,
           multipart: Annotated[bool | None, typer.Option("--multipart/--single", help="Default: by size")] = None,
           resume: Annotated[str | None, typer.Option("--resume", help="Upload id of an interrupted upload")] = None,
           url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Upload a file (signed URLs; multipart for large files; sha256 checked). Prints the asset id."""
    size = file.stat().st_size
    with handled(as_json), connect(url) as c, BytesProgressView(f"upload {file.name}", size) as view:
        asset = c.assets.upload(file, content_type, lifecycle=lifecycle, multipart=multipart, on_progress=view,
                                resume=resume)
    if as_json:
        _print_json(asset.to_dict())
    else:
        typer.echo(asset.id)


def download(asset_id: str,
             output: Annotated[Path | None, typer.Option("--output", "-o", help="File or directory (default: "
                                                                                "here, under its name)")] = None,
             url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Download an asset (streamed; size and sha256 verified before the file appears). Prints the path."""
    with handled(as_json), connect(url) as c:
        asset = c.assets.get(asset_id)
        with BytesProgressView(f"download {asset.filename or asset.id}", asset.size) as view:
            path = c.assets.download(asset_id, output, on_progress=view)
    if as_json:
        _print_json({"path": str(path), "asset": asset.to_dict()})
    else:
        typer.echo(str(path))


@assets_app.command("list")
def assets_list(job_id: Annotated[str | None, typer.Option("--job", help="Only this job's outputs")] = None,
                limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
                url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Your assets, newest first."""
    with handled(as_json), connect(url) as c:
        assets = c.assets.list(limit=limit, job_id=job_id)
    if as_json:
        _print_json([a.to_dict() for a in assets])
        return
    for a in assets:
        typer.echo(f"{a.id}  {a.content_type:<24} {a.size:>12}  {a.lifecycle:<10} {a.filename or ''}")


@assets_app.command("show")
def assets_show(asset_id: str, url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """One asset's metadata (and a signed download URL)."""
    with handled(as_json), connect(url) as c:
        asset = c.assets.get(asset_id)
    if as_json:
        _print_json(asset.to_dict())
        return
    for name in ("id", "filename", "content_type", "size", "sha256", "lifecycle", "job_id", "created_at",
                 "expires_at"):
        typer.echo(f"{name:<13} {getattr(asset, name) if getattr(asset, name) is not None else '-'}")


@assets_app.command("delete")
def assets_delete(asset_id: str, url: UrlOpt = None) -> None:
    """Delete an asset and its bytes."""
    with handled(), connect(url) as c:
        c.assets.delete(asset_id)
    typer.echo(f"deleted {asset_id}")


def credits(limit: Annotated[int, typer.Option(min=1, max=500)] = 10, url: UrlOpt = None,
            as_json: JsonOpt = False) -> None:
    """Your credit balance and latest ledger entries."""
    with handled(as_json), connect(url) as c:
        cr = c.credits.get(limit=limit)
    if as_json:
        _print_json(cr.to_dict())
        return
    typer.echo(f"balance {cr.balance}")
    for e in cr.ledger:
        typer.echo(f"  {e.created_at or '-'}  {e.kind:<8} {e.amount:>+8}  -> {e.balance_after:<8} {e.job_id or ''} "
                   f"{e.note}".rstrip())


def models_list_remote(url: str | None, task: str | None, as_json: bool) -> None:
    """`reelforge models list` against a server."""
    with handled(as_json), connect(url) as c:
        models = c.models.list(task)
    if as_json:
        _print_json([m.to_dict() for m in models])
        return
    for m in models:
        mark = "ok " if m.available else "-- "
        extra = " [test model]" if m.test_model else ""
        typer.echo(f"{mark}{m.task:<16} {m.name:<14}{extra} {'' if m.available else m.reason or ''}".rstrip())


def register(app: typer.Typer) -> None:
    """Adds the remote commands to the `reelforge` app."""
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
    app.command()(submit)
    app.command()(upload)
    app.command()(download)
    app.command()(credits)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(assets_app, name="assets")
