"""The deployment's tests: the CDK app (synthesized offline), the images' files and the diagrams.

They need the `deploy` extra (aws-cdk-lib, diagrams, cfn-lint, moto) and, for pictures, Graphviz's `dot`; without
them they skip, except under CI=true, where a missing piece is a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures.databases import CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_AWS = ROOT / "deploy" / "aws"
DEPLOY_DOCKER = ROOT / "deploy" / "docker"
if str(DEPLOY_AWS) not in sys.path:
    sys.path.insert(0, str(DEPLOY_AWS))
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def need(module: str) -> ModuleType:
    """Import `module`, or skip (fail under CI) naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed (pip install -e '.[deploy]'): {exc}"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
        raise


def docker_module(name: str) -> ModuleType:
    """A script of deploy/docker (lint, healthcheck, entrypoint), imported under a name of its own."""
    key = f"reelforge_docker_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, DEPLOY_DOCKER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def need_dot() -> None:
    if shutil.which("dot") is None:
        message = "Graphviz's dot is missing (make graphviz)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
