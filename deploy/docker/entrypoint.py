"""The images' entrypoint: turns the deployment's secrets into the platform's settings, then runs `reelforge`.

The stacks hand each process the ARNs of two Secrets Manager secrets rather than their values, so the same image
runs on ECS (API) and on plain EC2 (workers) and nothing secret sits in a task definition or in user data:

- REELFORGE_DEPLOY_DATABASE_SECRET_ARN: the RDS secret (JSON: username, password, host, port, dbname) becomes
  REELFORGE_DATABASE__URL (`postgresql+psycopg://...`, TLS required);
- REELFORGE_DEPLOY_INSTANCE_SECRET_ARN: the instance secret becomes REELFORGE_AUTH__JWT_SECRET (token and URL
  signing, shared by every process).

A setting already present in the environment wins (local runs, tests).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import quote

DATABASE_SECRET = "REELFORGE_DEPLOY_DATABASE_SECRET_ARN"
INSTANCE_SECRET = "REELFORGE_DEPLOY_INSTANCE_SECRET_ARN"
REGION = "REELFORGE_DEPLOY_REGION"


def database_url(secret: dict[str, Any]) -> str:
    """The SQLAlchemy URL for an RDS-generated secret's JSON."""
    user = quote(str(secret["username"]), safe="")
    password = quote(str(secret["password"]), safe="")
    host, port = secret["host"], int(secret.get("port", 5432))
    name = quote(str(secret.get("dbname") or "reelforge"), safe="")
    return f"postgresql+psycopg://{user}:{password}@{host}:{port}/{name}?sslmode=require"


def resolve(env: MutableMapping[str, str], fetch: Callable[[str], str]) -> None:
    """Fill the platform's settings from the secrets named in `env` (`fetch(arn)` returns a secret's string)."""
    if env.get(DATABASE_SECRET) and not env.get("REELFORGE_DATABASE__URL"):
        env["REELFORGE_DATABASE__URL"] = database_url(json.loads(fetch(env[DATABASE_SECRET])))
    if env.get(INSTANCE_SECRET) and not env.get("REELFORGE_AUTH__JWT_SECRET"):
        env["REELFORGE_AUTH__JWT_SECRET"] = fetch(env[INSTANCE_SECRET]).strip()


def secrets_manager(env: MutableMapping[str, str]) -> Callable[[str], str]:
    import boto3

    client = boto3.client("secretsmanager", region_name=env.get(REGION) or None,
                          endpoint_url=env.get("REELFORGE_DEPLOY_SECRETS_ENDPOINT") or None)

    def fetch(arn: str) -> str:
        return str(client.get_secret_value(SecretId=arn)["SecretString"])

    return fetch


def main(argv: list[str]) -> None:
    env = os.environ
    if env.get(DATABASE_SECRET) or env.get(INSTANCE_SECRET):
        resolve(env, secrets_manager(env))
    os.execvp("reelforge", ["reelforge", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
