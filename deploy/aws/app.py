#!/usr/bin/env python3
"""The CDK app's entry (`cdk synth`, `cdk deploy` from this folder read cdk.json, which runs this file).

Choices come from the CDK context (`-c name=value`, or cdk.json's "context"): every field of
`reelforge_deploy.description.DeployConfig`. `cdn_public_key_file` reads the CloudFront signing key's public half
from a file. The platform's own settings (alarm thresholds, installed applications) are read from this
environment, as `reelforge` itself would read them (REELFORGE_...).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aws_cdk as cdk

from reelforge_deploy.assembly import build
from reelforge_deploy.description import DeployConfig


def main() -> None:
    app = cdk.App()
    key_file = app.node.try_get_context("cdn_public_key_file")

    def context(name: str) -> object:
        if name == "cdn_public_key_pem" and key_file:
            return Path(str(key_file)).read_text()
        return app.node.try_get_context(name)

    build(DeployConfig.from_context(context), app=app)
    app.synth()


if __name__ == "__main__":
    main()
