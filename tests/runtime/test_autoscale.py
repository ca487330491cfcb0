"""`reelforge autoscale`: the queue per resource class drives real worker processes on this machine (from zero on the
first job, back to zero once idle) and an EC2 Auto Scaling group's desired capacity (moto's server: the real
Auto Scaling API over HTTP)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, wait_for
from tests.fixtures.env import child_env

pytestmark = pytest.mark.timeout(180)

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES = "tests.fixtures.resource_pipelines"


def worker_env(s: Any) -> dict[str, str]:
    """The environment that makes `reelforge worker` children use the test's settings."""
    env = child_env()
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "REELFORGE_DATA_DIR": str(s.data_dir), "REELFORGE_DATABASE__URL": str(s.database_url),
        "REELFORGE_MODELS__DIR": str(s.models_dir), "REELFORGE_AUTH__JWT_SECRET": s.auth.jwt_secret,
        "REELFORGE_EXTRA_PIPELINES": json.dumps(list(s.extra_pipelines)), "REELFORGE_LOG_JSON": "false",
        "REELFORGE_JOBS__POLL_INTERVAL_S": "0.1", "REELFORGE_JOBS__HEARTBEAT_S": "0.5",
        "REELFORGE_JOBS__SHUTDOWN_GRACE_S": "5",
    })
    return env


def _submit(container: Any, owner: Any, kind: str) -> str:
    job, _ = container.jobs.submit(owner, kind, {})
    return str(job.id)


@pytest.fixture
def owner(container: Any) -> Any:
    from reelforge.domain.types import Principal, Role

    u = container.auth.register("scale@example.com", "correct horse battery")
    return Principal(user_id=u.id, email=u.email, role=Role.user)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Any:
    return make_settings(tmp_path, sqlite_url, extra_pipelines=[PIPELINES],
                         autoscale={"cpu": {"idle_s": 1.0, "max_workers": 2, "jobs_per_worker": 4},
                                    "gpu": {"idle_s": 1.0, "max_workers": 3, "jobs_per_worker": 1}})


def test_local_workers_from_zero_and_back(container: Any, owner: Any, settings: Any) -> None:
    from reelforge.adapters.scaling.local import LocalProcessScaler

    scaler = LocalProcessScaler(container.kinds_of_class, env=worker_env(settings), grace_s=10,
                                argv=[sys.executable, "-m", "reelforge", "worker"])
    scaling = container.autoscaler(scaler)
    now = [0.0]
    scaling.clock = lambda: now[0]  # the policy's idle period on a clock the test moves
    try:
        step = scaling.step()
        assert step.decisions["cpu"].desired == 0 and scaler.current("cpu") == 0  # nothing to do: nothing runs
        job_id = _submit(container, owner, "test.cpu")
        step = scaling.step()
        assert step.loads["cpu"].depth == 1 and step.decisions["cpu"].desired == 1
        assert step.decisions["gpu"].desired == 0  # a cpu job starts no gpu worker
        assert scaler.current("cpu") == 1 and scaler.current("gpu") == 0
        pid = scaler.pids("cpu")[0]

        def finished() -> bool:
            with container.store.tx(write=False) as tx:
                job = tx.jobs.job(job_id)
            return job is not None and job.status == "succeeded"

        wait_for(finished, timeout=60, interval=0.1)
        # idle, but not for idle_s yet: held
        now[0] = 0.5
        step = scaling.step()
        assert step.decisions["cpu"].desired == 1 and scaler.current("cpu") == 1
        now[0] = 1.5
        step = scaling.step()
        assert step.decisions["cpu"].desired == 0 and "idle for" in step.decisions["cpu"].reason
        assert scaler.current("cpu") == 0

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            scaler.current("cpu")  # reaps the exited child
            return False

        wait_for(gone, timeout=20, interval=0.1)  # SIGTERM: the worker stopped on its own
        with container.store.tx(write=False) as tx:
            assert {w.status for w in tx.ops.workers()} == {"stopped"}
        # the gpu class: each job wants its own worker, up to max_workers
        for _ in range(5):
            _submit(container, owner, "test.gpu")
        step = scaling.step()
        assert step.decisions["gpu"].desired == 3 and scaler.current("gpu") == 3
        assert step.decisions["cpu"].desired == 0
    finally:
        scaler.close(wait_s=15)
    assert scaler.current("gpu") == 0


@pytest.fixture
def moto_asg(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    if os.environ.get("CI") != "true":  # under CI a missing moto fails the test
        pytest.importorskip("moto", reason="the dev extra (moto[server]) is not installed")
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import boto3

    client = boto3.client("autoscaling", region_name="us-east-1", endpoint_url=url)
    client.create_launch_configuration(LaunchConfigurationName="gpu-lc", ImageId="ami-12c6146b",
                                       InstanceType="g5.xlarge")
    client.create_auto_scaling_group(AutoScalingGroupName="reelforge-gpu", LaunchConfigurationName="gpu-lc",
                                     MinSize=0, MaxSize=3, DesiredCapacity=0, AvailabilityZones=["us-east-1a"])
    try:
        yield url, client
    finally:
        server.stop()


def test_auto_scaling_group_desired_capacity(container: Any, owner: Any, moto_asg: tuple[str, Any]) -> None:
    from reelforge.adapters.scaling.asg import AsgScaler

    url, client = moto_asg

    def desired() -> int:
        groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=["reelforge-gpu"])["AutoScalingGroups"]
        return int(groups[0]["DesiredCapacity"])

    scaler = AsgScaler({"gpu": "reelforge-gpu"}, region="us-east-1", endpoint_url=url)
    scaling = container.autoscaler(scaler)
    now = [0.0]
    scaling.clock = lambda: now[0]
    assert scaling.step().decisions["gpu"].desired == 0 and desired() == 0
    ids = [_submit(container, owner, "test.gpu") for _ in range(2)]
    step = scaling.step()
    assert step.decisions["gpu"].desired == 2 and desired() == 2 and scaler.current("gpu") == 2
    for _ in range(3):
        ids.append(_submit(container, owner, "test.gpu"))
    scaling.step()
    assert desired() == 3  # max_workers (and the group's MaxSize)
    scaler.set_desired("gpu", 10)
    assert desired() == 3  # clamped to the group's MaxSize
    assert scaler.current("cpu") == 0  # no group for the cpu class: nothing to scale
    for job_id in ids:
        container.jobs.cancel(owner, job_id)
    scaling.step()
    assert desired() == 3  # idle, but not for idle_s yet
    now[0] = 1.5
    step = scaling.step()
    assert step.decisions["gpu"].desired == 0 and desired() == 0


def test_cli_once_sets_the_group(container: Any, owner: Any, settings: Any, moto_asg: tuple[str, Any],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from reelforge.cli.main import app
    from reelforge.config import get_settings

    url, client = moto_asg
    for _ in range(2):
        _submit(container, owner, "test.gpu")
    env = {k: v for k, v in worker_env(settings).items() if k.startswith("REELFORGE_")}
    env.update({"REELFORGE_AUTOSCALE__SCALER": "asg", "REELFORGE_AUTOSCALE__ASG_GROUPS": '{"gpu": "reelforge-gpu"}',
                "REELFORGE_AUTOSCALE__ASG_ENDPOINT_URL": url, "REELFORGE_LOG_LEVEL": "WARNING"})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["autoscale", "--once"])
        assert r.exit_code == 0, r.output
        line = next(ln for ln in r.output.splitlines() if ln.startswith("{"))
        doc = json.loads(line)
        assert doc["gpu"]["desired"] == 2 and doc["gpu"]["load"]["depth"] == 2
        groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=["reelforge-gpu"])["AutoScalingGroups"]
        assert groups[0]["DesiredCapacity"] == 2
        monkeypatch.setenv("REELFORGE_AUTOSCALE__SCALER", "local")
        get_settings.cache_clear()
        r = CliRunner().invoke(app, ["autoscale", "--once"])
        assert r.exit_code == 2 and "--once needs autoscale.scaler=asg" in r.output
    finally:
        get_settings.cache_clear()
