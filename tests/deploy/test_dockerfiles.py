"""The images' Dockerfiles pass the linter, and each of the linter's rules catches what it is for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY_DOCKER, docker_module

GOOD = """\
# syntax=docker/dockerfile:1.7
ARG BASE=python:3.11.7-slim-bookworm
FROM ${BASE} AS build
RUN pip install --no-cache-dir build
FROM python:3.11.7-slim-bookworm@sha256:0000000000000000000000000000000000000000000000000000000000000000
RUN apt-get update \\
 && apt-get install -y --no-install-recommends libgomp1 \\
 && rm -rf /var/lib/apt/lists/*
COPY --from=build --chown=root:root /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
HEALTHCHECK --interval=30s CMD ["python", "-c", "print(1)"]
ENTRYPOINT ["python"]
CMD ["-V"]
"""


def lint(text: str) -> list[str]:
    dockerlint = docker_module("lint")
    return [f.code for f in dockerlint.lint_text(text)]


def test_a_good_dockerfile_passes() -> None:
    assert lint(GOOD) == []


@pytest.mark.parametrize("old, new, code", [
    ("FROM ${BASE} AS build", "FROM python AS build", "RF001"),
    ("FROM ${BASE} AS build", "FROM python:latest AS build", "RF001"),
    ("ARG BASE=python:3.11.7-slim-bookworm", "ARG BASE=python", "RF001"),
    ("USER 10001:10001", "USER root", "RF003"),
    ("USER 10001:10001", "USER 0", "RF003"),
    ("USER 10001:10001\n", "", "RF003"),
    ('HEALTHCHECK --interval=30s CMD ["python", "-c", "print(1)"]', "HEALTHCHECK NONE", "RF004"),
    ('HEALTHCHECK --interval=30s CMD ["python", "-c", "print(1)"]\n', "", "RF004"),
    ("WORKDIR /app", "ADD https://example.com/tool.tgz /opt/\nWORKDIR /app", "RF005"),
    ("WORKDIR /app", "ADD tool.tgz /opt/\nWORKDIR /app", "RF006"),
    ("install -y --no-install-recommends", "install --no-install-recommends", "RF007"),
    ("install -y --no-install-recommends", "install -y", "RF007"),
    (" \\\n && rm -rf /var/lib/apt/lists/*", "", "RF008"),
    ("--chown=root:root ", "", "RF009"),
    ("pip install --no-cache-dir build", "pip install build", "RF010"),
    ('CMD ["-V"]', "CMD python -V", "RF011"),
    ('ENTRYPOINT ["python"]', "ENTRYPOINT python", "RF011"),
    ('HEALTHCHECK --interval=30s CMD ["python", "-c", "print(1)"]', "HEALTHCHECK CMD python -c 'print(1)'", "RF011"),
    ("WORKDIR /app", "WORKDIR app", "RF012"),
])
def test_each_rule_catches_its_fault(old: str, new: str, code: str) -> None:
    assert old in GOOD
    assert code in lint(GOOD.replace(old, new, 1))


def test_single_stage_is_refused() -> None:
    single = "FROM python:3.11.7-slim\nUSER 1000\nHEALTHCHECK CMD [\"true\"]\n"
    assert lint(single) == ["RF002"]


def test_pinned_packages_need_no_list_cleanup_and_env_disables_pip_cache() -> None:
    text = GOOD.replace(" \\\n && rm -rf /var/lib/apt/lists/*", "").replace("libgomp1", "libgomp1=12.2.0-14")
    assert lint(text) == []
    text = GOOD.replace("pip install --no-cache-dir build", "pip install build").replace(
        "ARG BASE=python:3.11.7-slim-bookworm", "ARG BASE=python:3.11.7-slim-bookworm\nENV PIP_NO_CACHE_DIR=1")
    assert "RF010" not in lint(text)


def test_a_rule_in_a_build_stage_counts_only_where_it_applies() -> None:
    # COPY without --chown and a root user are fine in a build stage; only the final stage runs.
    text = GOOD.replace("RUN pip install --no-cache-dir build", "USER root\nCOPY . /src")
    assert lint(text) == []


def test_the_images_dockerfiles_pass() -> None:
    files = sorted(DEPLOY_DOCKER.glob("*.Dockerfile"))
    assert {f.name for f in files} >= {"api.Dockerfile", "worker-cpu.Dockerfile", "worker-gpu.Dockerfile"}
    r = subprocess.run([sys.executable, str(DEPLOY_DOCKER / "lint.py"), *map(str, files)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_command_line_reports_findings(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nCMD python\n")
    r = subprocess.run([sys.executable, str(DEPLOY_DOCKER / "lint.py"), str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert f"{bad}:1: RF001" in r.stdout and "RF002" in r.stdout and "RF003" in r.stdout and f"{bad}:2: RF011" in r.stdout


def test_every_image_repository_has_its_dockerfile_and_healthcheck() -> None:
    from reelforge_deploy.description import describe

    dockerlint = docker_module("lint")
    for repo in describe().of_kind("image_repository"):
        path = DEPLOY_DOCKER / f"{repo.props['dockerfile']}.Dockerfile"
        assert path.is_file(), path
        instructions = dockerlint.parse(path.read_text())
        check = next(i for i in instructions if i.keyword == "HEALTHCHECK")
        role = "api" if repo.props["dockerfile"] == "api" else "worker"
        assert f'"/app/deploy/healthcheck.py", "{role}"' in check.args
