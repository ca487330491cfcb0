"""The CDK app: every stack, built from one deployment description."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from .description import STACKS, DeployConfig, Deployment, describe
from .stacks import AuthStack, ComputeStack, DataStack, EdgeStack, NetworkStack, ObservabilityStack


@dataclass
class Assembly:
    app: cdk.App
    deployment: Deployment
    stacks: dict[str, Any]  # by stack name (description.STACKS)

    def built(self) -> dict[str, Any]:
        """Every component's construct, by component id, across the stacks."""
        out: dict[str, Any] = {}
        for stack in self.stacks.values():
            out.update(stack.built)
        return out


CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads(CDK_JSON.read_text()).get("context", {})
    return context


def build(config: DeployConfig | None = None, *, app: cdk.App | None = None, outdir: str | Path | None = None,
          deployment: Deployment | None = None) -> Assembly:
    """Every stack of the deployment in one app (not yet synthesized)."""
    if app is None:  # as `cdk synth` would make it: with cdk.json's context (feature flags, choices)
        app = cdk.App(outdir=str(outdir) if outdir else None, context=cdk_json_context())
    if deployment is None:
        deployment = describe(config or DeployConfig.from_context(app.node.try_get_context))
    network = NetworkStack(app, deployment)
    data = DataStack(app, deployment, network)
    auth = AuthStack(app, deployment)
    compute = ComputeStack(app, deployment, network, data, auth)
    edge = EdgeStack(app, deployment, data)
    observability = ObservabilityStack(app, deployment, data, compute)
    stacks = {"network": network, "data": data, "auth": auth, "compute": compute, "edge": edge,
              "observability": observability}
    assert tuple(stacks) == STACKS
    return Assembly(app=app, deployment=deployment, stacks=stacks)
