"""The `reelforge` command as a user runs it: a real subprocess against a real server (uvicorn in a thread
of this process, an in-process worker), with HOME and XDG_CONFIG_HOME in the test's temporary folder.

Checks the commands' output for scripts (--json), the saved credentials (mode 600, rotated tokens kept),
progress on stderr, and the documented exit codes: 0 ok, 1 job failed, 2 bad input, 3 not found,
4 not logged in, 5 server unreachable.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reelforge.client import Client
from tests.integration.live_server import bind_socket, closed_port_url, live_settings, serve

PW = "correct horse battery"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server_socket() -> Iterator[Any]:
    sock = bind_socket()
    yield sock
    sock.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, server_socket: Any) -> Any:
    return live_settings(tmp_path, db_url, server_socket)


@pytest.fixture
def url(container: Any, worker: Any, server_socket: Any) -> Iterator[str]:
    with serve(container, server_socket) as u:
        yield u


class Cli:
    """Runs ``python -m reelforge ...`` with a private home, config and state directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path / "work"
        self.cwd.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("REELFORGE_", "XDG_"))}
        self.env.update({"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
                         "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "200", "NO_COLOR": "1",
                         "PYTHONPATH": str(REPO_ROOT)})
        self.credentials = tmp_path / "config" / "reelforge" / "credentials.json"

    def __call__(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
                 expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "reelforge", *args], cwd=self.cwd, env={**self.env, **(env or {})},
                           input=stdin, capture_output=True, text=True, timeout=120)
        if expect is not None:
            assert r.returncode == expect, f"{args} -> {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        return r

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self(*args, "--json", **kw).stdout)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def user(url: str, email: str) -> Client:
    c = Client(url, api_key="")
    c.auth.register(email, PW)
    c.auth.login(email, PW)
    return c


# The CLI is a client of the HTTP API: which database serves it changes nothing the CLI does (the client
# suite covers both engines), so the long flows run on SQLite and PostgreSQL gets a short smoke run.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_login_submit_jobs_and_files(url: str, cli: Cli, tmp_path: Path) -> None:
    ada = user(url, "ada@example.com")
    # Not logged in yet: exit 4 with a hint, before any request.
    r = cli("jobs", "list", expect=4)
    assert "reelforge login" in r.stderr

    out = cli("login", "--url", url + "/", "--email", "ada@example.com", "--password-stdin", stdin=PW + "\n")
    assert "Logged in to" in out.stdout and "ada@example.com" in out.stdout
    saved = json.loads(cli.credentials.read_text())
    assert saved["url"] == url and saved["refresh_token"] and saved["access_token"]
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600

    # submit --set: JSON values parsed, text kept as text, dotted keys nest; --wait follows to the end.
    r = cli("submit", "system.noop", "--set", "echo.n=3", "--set", "echo.text=hello world", "--set",
            'echo.list=[1, "a"]', "--set", "echo.flag=true", "--wait", "--json")
    job = json.loads(r.stdout)
    assert job["status"] == "succeeded"
    assert job["outputs"] == {"echo": {"n": 3, "text": "hello world", "list": [1, "a"], "flag": True}}
    assert "succeeded" in r.stderr  # progress goes to stderr, never into the JSON

    # --input file (merged under --set), then jobs wait / show / list / logs.
    body = tmp_path / "input.json"
    body.write_text(json.dumps({"echo": {"from": "file", "n": 1}}))
    job_id = cli("submit", "system.noop", "--input", str(body), "--set", "echo.n=2").stdout.strip()
    waited = cli("jobs", "wait", job_id, "--json", "--timeout", "30")
    assert json.loads(waited.stdout)["outputs"] == {"echo": {"from": "file", "n": 2}}
    shown = cli("jobs", "show", job_id).stdout
    assert "status    succeeded" in shown and job_id in shown
    page = cli.json("jobs", "list", "--kind", "system.noop", "--status", "succeeded", "--limit", "1")
    assert [j["id"] for j in page["data"]] == [job_id] and page["next_cursor"]
    logs = [json.loads(line) for line in cli("jobs", "logs", job_id, "--json").stdout.splitlines()]
    assert logs[0]["type"] == "JobQueued" and all("id" in e for e in logs)

    # logs --follow streams a running job's history until it ends.
    slow = cli.json("submit", "test.slow", "--set", "step_s=0.3")
    followed = cli("jobs", "logs", slow["id"], "--follow", "--json")
    types = [json.loads(line)["type"] for line in followed.stdout.splitlines()]
    assert types[0] == "JobQueued" and len(types) >= 6

    # Cancel; waiting on a cancelled or failed job exits 1; cancelling twice is a 409 (exit 2).
    running = cli("submit", "test.slow", "--set", "step_s=5").stdout.strip()
    assert cli.json("jobs", "cancel", running)["cancel_requested"] is True
    assert json.loads(cli("jobs", "wait", running, "--json", expect=1).stdout)["status"] == "cancelled"
    assert "job_finished" in cli("jobs", "cancel", running, expect=2).stderr
    failed = cli("submit", "test.invalid", "--wait", "--json", expect=1)
    assert json.loads(failed.stdout)["error"]["code"] == "validation_error"
    retried = cli("jobs", "retry", json.loads(failed.stdout)["id"]).stdout.strip()
    assert "status    failed" in cli("jobs", "wait", retried, expect=1).stdout
    timed_out = cli("submit", "test.slow", "--set", "step_s=1", "--wait", "--timeout", "0.5", "--json", expect=6)
    assert "timed out" in timed_out.stderr
    ada.jobs.cancel(json.loads(timed_out.stdout)["id"])  # the last state seen, as JSON

    # Files: upload (single PUT, and forced multipart) and download, checked byte for byte.
    data = tmp_path / "clip.bin"
    data.write_bytes(os.urandom(200_000) + b"end")
    asset = cli.json("upload", str(data), "--lifecycle", "infrequent")
    assert asset["size"] == data.stat().st_size and asset["lifecycle"] == "infrequent"
    asset_id = cli("upload", str(data), "--multipart").stdout.strip()
    got = cli("download", asset_id, "-o", str(tmp_path / "copy.bin"))
    assert got.stdout.strip() == str(tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == data.read_bytes()
    into = cli.json("download", asset["id"])  # into the current directory, under its name
    assert Path(into["path"]) == cli.cwd / "clip.bin" and (cli.cwd / "clip.bin").read_bytes() == data.read_bytes()
    assert {a["id"] for a in cli.json("assets", "list")} == {asset["id"], asset_id}
    cli("assets", "delete", asset_id)
    credits = cli.json("credits")
    assert credits["balance"] == ada.credits.get().balance < 100 and credits["ledger"]

    # models list asks the server when logged in; --local lists this machine's adapters.
    remote = cli.json("models", "list", "--task", "image.generate")
    assert any(m["name"] == "tiny-sd" and m["available"] for m in remote)
    local = cli.json("models", "list", "--local", "--task", "image.generate",
                     env={"REELFORGE_DATA_DIR": str(tmp_path / "var"), "REELFORGE_LOG_JSON": "false"})
    assert {m["name"] for m in local} >= {"tiny-sd"}

    # A refresh while the access token has expired: the rotated pair is saved for the next command.
    saved = json.loads(cli.credentials.read_text())
    saved["expires_at"] = time.time() - 60
    cli.credentials.write_text(json.dumps(saved))
    assert cli.json("whoami")["email"] == "ada@example.com"
    renewed = json.loads(cli.credentials.read_text())
    assert renewed["refresh_token"] != saved["refresh_token"] and renewed["expires_at"] > time.time()
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    ada.close()


@SQLITE_ONLY
def test_exit_codes(url: str, cli: Cli, tmp_path: Path) -> None:
    ada = user(url, "ada@example.com")
    key = ada.api_keys.create("cli").key or ""
    cli("login", "--url", url, "--api-key", key)
    assert json.loads(cli.credentials.read_text())["api_key"] == key
    bob_job = user(url, "bob@example.com").jobs.submit("system.noop").id
    (tmp_path / "list.json").write_text("[1, 2]")
    down = closed_port_url()

    checks: list[tuple[int, tuple[str, ...], dict[str, str], str]] = [
        # 3: not found (another user's job is not found either).
        (3, ("jobs", "show", "no-such-job"), {}, "not_found"),
        (3, ("jobs", "show", bob_job), {}, "HTTP 404"),
        (3, ("download", "no-such-asset", "--json"), {}, '"status": 404'),
        # 2: input the server refuses (with the field), or bad usage.
        (2, ("submit", "image.generate", "--set", "prompt=x", "--set", "width=63", "--set", "model=tiny-sd"), {},
         "width"),
        (2, ("submit", "no.such.kind"), {}, "unknown_kind"),
        (2, ("submit", "system.noop", "--set", "no-equals-sign"), {}, "key=value"),
        (2, ("submit", "system.noop", "--input", str(tmp_path / "missing.json")), {}, "cannot read"),
        (2, ("submit", "system.noop", "--input", str(tmp_path / "list.json")), {}, "JSON object"),
        (2, ("jobs", "list", "--status", "exploded"), {}, "validation_error"),
        (2, ("jobs", "nonsense"), {}, ""),
        # 4: credentials the server refuses; saved ones are never sent to another server.
        (4, ("jobs", "list"), {"REELFORGE_API_KEY": "rf_nope"}, "invalid_api_key"),
        (4, ("login", "--url", url, "--email", "ada@example.com", "--password", "wrong password"), {},
         "invalid_credentials"),
        (4, ("whoami",), {"REELFORGE_URL": down}, "not logged in"),
        # 5: nothing listens there.
        (5, ("jobs", "list", "--url", down), {"REELFORGE_API_KEY": "rf_x"}, "Cannot reach"),
        (5, ("upload", str(tmp_path / "list.json"), "--url", down), {"REELFORGE_API_KEY": "rf_x"}, "Cannot reach"),
        (5, ("login", "--url", down, "--api-key", "rf_x"), {}, "Cannot reach"),
        # 0: the environment's URL is the saved one.
        (0, ("whoami",), {"REELFORGE_URL": url}, ""),
    ]
    # Independent commands: run them side by side (each is a process that mostly waits on its imports).
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: cli(*c[1], env=c[2], expect=None), checks))
    for (code, args, _, needle), r in zip(checks, results, strict=True):
        assert r.returncode == code, f"{args} -> {r.returncode} (want {code})\n{r.stdout}\n{r.stderr}"
        assert needle in r.stdout + r.stderr, (args, needle, r.stdout, r.stderr)
    cli("logout")
    assert not cli.credentials.exists()
    assert "reelforge login" in cli("whoami", "--url", url, expect=4).stderr
    ada.close()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_smoke_on_postgres(url: str, cli: Cli, tmp_path: Path) -> None:
    user(url, "ada@example.com").close()
    cli("login", "--url", url, "--email", "ada@example.com", "--password", PW)
    job = cli.json("submit", "system.noop", "--set", "echo=pg", "--wait")
    assert job["status"] == "succeeded" and job["outputs"] == {"echo": "pg"}
    data = tmp_path / "a.txt"
    data.write_text("postgres")
    asset_id = cli("upload", str(data)).stdout.strip()
    assert Path(cli("download", asset_id, "-o", str(tmp_path / "b.txt")).stdout.strip()).read_text() == "postgres"
