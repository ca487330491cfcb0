"""The scripts the images run: the health checks (against a real API and a real workers registry) and the
entrypoint (against a Secrets Manager server speaking the AWS protocol: moto's)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.deploy.conftest import DEPLOY_DOCKER, docker_module, need
from tests.fixtures.env import child_env


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = child_env()
    env.update({"REELFORGE_DATABASE__URL": url, "REELFORGE_DATA_DIR": str(tmp_path / "var"),
                "REELFORGE_LOG_JSON": "false"})
    return env


def _heartbeat(url: str, tmp_path: Path, worker_id: str, hostname: str, status: str = "running") -> None:
    from reelforge.container import Container

    c = Container(make_settings(tmp_path, url))
    try:
        with c.store.tx() as tx:
            tx.ops.worker_heartbeat(worker_id, hostname=hostname, pid=1, concurrency=1, status=status)
    finally:
        c.close()


def test_worker_health_follows_this_hosts_registration(tmp_path: Path, sqlite_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    health = docker_module("healthcheck")
    for k, v in _env(tmp_path, sqlite_url).items():
        if k.startswith("REELFORGE_"):
            monkeypatch.setenv(k, v)
    host = socket.gethostname()
    assert health.worker() is False  # nobody registered
    _heartbeat(sqlite_url, tmp_path, "elsewhere:1", "another-host")
    assert health.worker() is False  # a worker, but not on this host
    _heartbeat(sqlite_url, tmp_path, "here:1", host, status="stopped")
    assert health.worker() is False  # this host's worker has stopped
    _heartbeat(sqlite_url, tmp_path, "here:2", host)
    assert health.worker() is True
    # As the image runs it: a process of its own, exit status 0.
    r = subprocess.run([sys.executable, str(DEPLOY_DOCKER / "healthcheck.py"), "worker"],
                       env=_env(tmp_path, sqlite_url), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_worker_health_fails_when_the_database_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    env = _env(tmp_path, f"postgresql+psycopg://nobody@127.0.0.1:{port}/none?connect_timeout=2")
    for k, v in env.items():
        if k.startswith("REELFORGE_"):
            monkeypatch.setenv(k, v)
    assert docker_module("healthcheck").main(["worker"]) == 1
    assert "unhealthy" in capsys.readouterr().err


def test_healthcheck_usage(tmp_path: Path) -> None:
    assert docker_module("healthcheck").main(["both"]) == 2


@pytest.fixture
def api_url(container: Any) -> Iterator[str]:
    import uvicorn

    from reelforge.api.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(container=container), host="127.0.0.1", port=0,
                                           log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_api_health_asks_the_health_endpoint(api_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    health = docker_module("healthcheck")
    monkeypatch.setenv("REELFORGE_HEALTHCHECK_URL", f"{api_url}/healthz")
    assert health.api() is True
    assert health.main(["api"]) == 0
    monkeypatch.setenv("REELFORGE_HEALTHCHECK_URL", f"{api_url}/no-such-page")
    assert health.api() is False
    port = int(api_url.rsplit(":", 1)[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert closed != port
    monkeypatch.setenv("REELFORGE_HEALTHCHECK_URL", f"http://127.0.0.1:{closed}/healthz")
    assert health.main(["api"]) == 1


@pytest.fixture
def secrets_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    need("moto")
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_entrypoint_turns_the_deployment_secrets_into_settings(secrets_server: str) -> None:
    import boto3
    from sqlalchemy.engine import make_url

    entry = docker_module("entrypoint")
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=secrets_server)
    password = "p@ss:w/rd%?#"  # what RDS may generate: every URL-special character must survive
    db = sm.create_secret(Name="db", SecretString=json.dumps(
        {"username": "reelforge", "password": password, "host": "db.internal", "port": 5432, "dbname": "reelforge",
         "engine": "postgres"}))
    instance = sm.create_secret(Name="instance", SecretString="s3cr3t-signing-key\n")
    env = {entry.DATABASE_SECRET: db["ARN"], entry.INSTANCE_SECRET: instance["ARN"], entry.REGION: "us-east-1",
           "REELFORGE_DEPLOY_SECRETS_ENDPOINT": secrets_server}
    entry.resolve(env, entry.secrets_manager(env))
    url = make_url(env["REELFORGE_DATABASE__URL"])
    assert url.drivername == "postgresql+psycopg" and url.username == "reelforge" and url.password == password
    assert url.host == "db.internal" and url.port == 5432 and url.database == "reelforge"
    assert url.query["sslmode"] == "require"
    assert env["REELFORGE_AUTH__JWT_SECRET"] == "s3cr3t-signing-key"
    # A setting given to the process wins over the secret.
    env = {entry.DATABASE_SECRET: db["ARN"], "REELFORGE_DATABASE__URL": "sqlite:///x.db",
           "REELFORGE_DEPLOY_SECRETS_ENDPOINT": secrets_server}
    entry.resolve(env, entry.secrets_manager(env))
    assert env["REELFORGE_DATABASE__URL"] == "sqlite:///x.db"


def test_entrypoint_fails_loudly_for_a_missing_secret(secrets_server: str) -> None:
    from botocore.exceptions import ClientError

    entry = docker_module("entrypoint")
    env = {entry.INSTANCE_SECRET: "arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf",
           "REELFORGE_DEPLOY_SECRETS_ENDPOINT": secrets_server, entry.REGION: "us-east-1"}
    with pytest.raises(ClientError):
        entry.resolve(env, entry.secrets_manager(env))
    assert "REELFORGE_AUTH__JWT_SECRET" not in env
