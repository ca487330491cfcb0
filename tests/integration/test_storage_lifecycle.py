"""`reelforge storage apply-lifecycle`: the bucket lifecycle configuration matching the lifecycle classes.

SeaweedFS keeps expiration, abort-multipart and noncurrent-version rules with tag filters and returns them
verbatim, but answers NotImplemented to storage-class transitions; moto keeps every rule. So the command runs for
real on SeaweedFS (without transitions, then refused with them), and the exact request body of the full
configuration is checked as sent (botocore's before-send hook) and as moto stores it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from reelforge.adapters.storage.s3 import S3ObjectStore
from reelforge.domain.cloud import lifecycle_rules
from tests.fixtures.env import child_env
from tests.fixtures.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, moto_server  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
            expect: int = 0) -> subprocess.CompletedProcess[str]:
    base = child_env()
    base.update({"REELFORGE_DATA_DIR": str(tmp_path / "var"), "REELFORGE_AUTH__JWT_SECRET": "x" * 40,
                 "REELFORGE_LOG_JSON": "false", "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"})
    r = subprocess.run([sys.executable, "-m", "reelforge", "storage", "apply-lifecycle", *args],
                       env={**base, **(env or {})}, capture_output=True, text=True, timeout=120)
    assert r.returncode == expect, f"{args} -> {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def s3_env(endpoint: str, bucket: str, access: str, secret: str, **extra: str) -> dict[str, str]:
    return {"REELFORGE_STORAGE__BACKEND": "s3", "REELFORGE_STORAGE__S3_BUCKET": bucket,
            "REELFORGE_STORAGE__S3_ENDPOINT_URL": endpoint, "REELFORGE_STORAGE__S3_ACCESS_KEY": access,
            "REELFORGE_STORAGE__S3_SECRET_KEY": secret, "REELFORGE_STORAGE__S3_ADDRESSING_STYLE": "path", **extra}


def _plain(element: ET.Element) -> Any:
    """An XML element as the JSON shape boto3 uses: repeated elements become lists, numbers become ints."""
    children = list(element)
    if not children:
        text = element.text or ""
        return int(text) if text.isdigit() else text
    out: dict[str, Any] = {}
    for child in children:
        name = child.tag.rsplit("}", 1)[-1]
        if name == "Transition":
            out.setdefault("Transitions", []).append(_plain(child))
        elif name == "Rule":
            out.setdefault("Rules", []).append(_plain(child))
        else:
            out[name] = _plain(child)
    return out


def test_local_store_has_no_bucket_rules(tmp_path: Path) -> None:
    r = run_cli(tmp_path, expect=2)
    assert "lifecycle_unsupported" in r.stderr and "local" in r.stderr
    # --dry-run prints what would be written, whichever store is configured.
    printed = json.loads(run_cli(tmp_path, "--dry-run", "--json").stdout)
    assert printed == {"Rules": lifecycle_rules()}


def test_applies_on_seaweedfs(tmp_path: Path, seaweed: Any) -> None:
    bucket = f"rf-{uuid.uuid4().hex[:12]}"
    env = s3_env(seaweed.endpoint_url, bucket, seaweed.access_key, seaweed.secret_key)
    # With storage classes (the default) the rules move objects between classes: SeaweedFS refuses those.
    r = run_cli(tmp_path, env=env, expect=1)
    assert "NotImplemented" in r.stderr and "S3_STORAGE_CLASSES=false" in r.stderr
    without = {**env, "REELFORGE_STORAGE__S3_STORAGE_CLASSES": "false"}
    out = json.loads(run_cli(tmp_path, "--json", env=without).stdout)
    expected = lifecycle_rules(transitions=False)
    assert out["bucket"] == bucket and out["applied"] == [rule["ID"] for rule in expected]
    assert [rule["ID"] for rule in expected] == ["reelforge-temporary-expire", "reelforge-abort-incomplete-multipart",
                                                 "reelforge-noncurrent-expire"]
    store = S3ObjectStore(bucket, endpoint_url=seaweed.endpoint_url, access_key=seaweed.access_key,
                          secret_key=seaweed.secret_key, addressing_style="path")
    assert store.lifecycle_rules() == expected  # the server returns our rules, tag filter included
    text = run_cli(tmp_path, env=without).stdout
    assert f"Applied 3 lifecycle rules to bucket {bucket}" in text


def test_full_configuration_request_body(moto_server: MotoServer) -> None:  # noqa: F811
    store = S3ObjectStore(f"rf-{uuid.uuid4().hex[:12]}", endpoint_url=moto_server.endpoint_url, region=REGION,
                          access_key=ACCESS_KEY, secret_key=SECRET_KEY, addressing_style="path")
    bodies: list[bytes] = []
    store.client.meta.events.register("before-send.s3.PutBucketLifecycleConfiguration",
                                      lambda request, **_: bodies.append(bytes(request.body)))
    store.apply_lifecycle(lifecycle_rules())
    assert len(bodies) == 1
    root = ET.fromstring(bodies[0])
    assert root.tag == "{http://s3.amazonaws.com/doc/2006-03-01/}LifecycleConfiguration"
    assert _plain(root) == {"Rules": lifecycle_rules()}
    # Tag filters and both transitions of the hot rule are in the request as S3 reads them.
    hot = next(r for r in _plain(root)["Rules"] if r["ID"] == "reelforge-hot-tiering")
    assert hot["Filter"] == {"Tag": {"Key": "reelforge-lifecycle", "Value": "hot"}}
    assert [t["StorageClass"] for t in hot["Transitions"]] == ["STANDARD_IA", "GLACIER_IR"]
    assert store.lifecycle_rules() == lifecycle_rules()
