"""The CDK app, synthesized offline once per module, checked with aws_cdk.assertions and by walking its templates."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY_AWS, need

CERT = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The deployment as cdk.json configures it (what the diagrams show), every stack synthesized."""
    need("aws_cdk")
    from aws_cdk.assertions import Template

    from reelforge_deploy import diagrams
    from reelforge_deploy.assembly import build
    from reelforge_deploy.description import describe

    d = describe(diagrams.default_config())
    d = replace(d, config=replace(d.config, cdn_public_key_pem=diagrams.throwaway_public_key()))
    outdir = tmp_path_factory.mktemp("cdk.out")
    a = build(deployment=d, outdir=outdir)
    cloud = a.app.synth()
    raw = {name: cloud.get_stack_by_name(stack.stack_name).template for name, stack in a.stacks.items()}
    files = {name: outdir / f"{stack.stack_name}.template.json" for name, stack in a.stacks.items()}
    return {"assembly": a, "d": d, "raw": raw, "files": files,
            "t": {name: Template.from_json(t) for name, t in raw.items()}}


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def props(template: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r.get("Properties", {}) for r in resources(template, type_).values()]


# --- the description and the stacks agree --------------------------------------------------------------------------

def test_every_described_component_is_built_and_nothing_else(synth: dict[str, Any]) -> None:
    d = synth["d"]
    built = synth["assembly"].built()
    expected = {c.id for c in d.components if c.stack != "external"}
    assert set(built) == expected
    for name, stack in synth["assembly"].stacks.items():
        assert {cid for cid in stack.built} == {c.id for c in d.in_stack(name)}


def _step(ctx: Any, data: Any) -> Any:
    return data


def test_job_kinds_come_from_the_manifests_and_gpu_follows_the_tasks_resources() -> None:
    from reelforge.applications import AppManifest
    from reelforge.config import Settings
    from reelforge.domain.pipeline import Graph, Pipeline, Resources, Task
    from reelforge_deploy.description import describe

    step = _step
    cpu = Pipeline(kind="t.cpu", version=1, description="cpu only",
                   graph=Graph(start_at="a", states=(Task("a", step, end=True),)))
    gpu = Pipeline(kind="t.gpu", version=1, description="one gpu step",
                   graph=Graph(start_at="a", states=(Task("a", step, next="b"),
                                                     Task("b", step, resources=Resources(gpu=1), end=True))))
    app = AppManifest(name="sample", title="Sample", pipelines=lambda: [cpu, gpu])
    d = describe(settings=Settings(), manifests=[app])
    (a,) = d.applications
    assert [(k.kind, k.resource_class, k.gpu_steps) for k in a.job_kinds] == [("t.cpu", "cpu", ()),
                                                                              ("t.gpu", "gpu", ("b",))]
    assert d.kinds_for("gpu") == ["t.gpu"]
    gpu_group = d.component("workers-gpu")
    assert gpu_group.props["kinds"] == ("t.gpu",)
    # With no GPU job kind at all, no GPU worker group is described.
    d = describe(settings=Settings(), manifests=[AppManifest(name="sample", title="Sample",
                                                             pipelines=lambda: [cpu])])
    assert [c.props["resource_class"] for c in d.of_kind("worker_group")] == ["cpu"]


# --- network ----------------------------------------------------------------------------------------------------

def test_network_has_private_subnets_an_s3_gateway_and_interface_endpoints(synth: dict[str, Any]) -> None:
    from reelforge_deploy.description import INTERFACE_ENDPOINTS

    t = synth["raw"]["network"]
    endpoints = props(t, "AWS::EC2::VPCEndpoint")
    gateways = [e for e in endpoints if e.get("VpcEndpointType") == "Gateway"]
    assert len(gateways) == 1 and "s3" in json.dumps(gateways[0]["ServiceName"])
    interfaces = [e for e in endpoints if e.get("VpcEndpointType") == "Interface"]
    names = {json.dumps(e["ServiceName"]) for e in interfaces}
    for service, _ in INTERFACE_ENDPOINTS:
        assert any(f".{service}" in n for n in names), service
    assert all(e["PrivateDnsEnabled"] for e in interfaces)
    subnets = props(t, "AWS::EC2::Subnet")
    assert sum(1 for s in subnets if not s.get("MapPublicIpOnLaunch")) >= 4  # private + isolated, in 2 AZs


# --- data -------------------------------------------------------------------------------------------------------

def _cfn_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The S3 API shape of `reelforge.domain.cloud.lifecycle_rules()` in CloudFormation's shape."""
    out = []
    for r in rules:
        c: dict[str, Any] = {"Id": r["ID"], "Status": r["Status"]}
        tag = r["Filter"].get("Tag")
        if tag:
            c["TagFilters"] = [{"Key": tag["Key"], "Value": tag["Value"]}]
        if r["Filter"].get("Prefix"):
            c["Prefix"] = r["Filter"]["Prefix"]
        if "Expiration" in r:
            c["ExpirationInDays"] = r["Expiration"]["Days"]
        if "Transitions" in r:
            c["Transitions"] = [{"StorageClass": x["StorageClass"], "TransitionInDays": x["Days"]}
                                for x in r["Transitions"]]
        if "AbortIncompleteMultipartUpload" in r:
            c["AbortIncompleteMultipartUpload"] = r["AbortIncompleteMultipartUpload"]
        if "NoncurrentVersionExpiration" in r:
            c["NoncurrentVersionExpiration"] = {"NoncurrentDays": r["NoncurrentVersionExpiration"]["NoncurrentDays"]}
        out.append(c)
    return out


def test_media_bucket_lifecycle_is_the_platforms(synth: dict[str, Any]) -> None:
    from reelforge.domain import cloud

    media = synth["assembly"].stacks["data"].buckets["bucket-media"]
    logical = synth["assembly"].stacks["data"].get_logical_id(media.node.default_child)
    bucket = synth["raw"]["data"]["Resources"][logical]["Properties"]
    assert bucket["LifecycleConfiguration"]["Rules"] == _cfn_rules(cloud.lifecycle_rules())
    by_id = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    # What the issue asks, read back from the template: temporary objects expire, outputs go to IA after 30 days
    # and to Glacier after 90.
    assert by_id["reelforge-temporary-expire"]["TagFilters"] == [{"Key": cloud.LIFECYCLE_TAG, "Value": "temporary"}]
    assert by_id["reelforge-temporary-expire"]["ExpirationInDays"] == 1
    assert by_id["reelforge-hot-tiering"]["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": 30}, {"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]


def test_lifecycle_translation_refuses_what_it_cannot_translate() -> None:
    need("aws_cdk")
    from reelforge_deploy.stacks import lifecycle_rules

    with pytest.raises(ValueError, match="no translation"):
        lifecycle_rules([{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "ObjectSizeGreaterThan": 5}])
    with pytest.raises(KeyError):
        lifecycle_rules([{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""},
                          "Transitions": [{"Days": 1, "StorageClass": "REDUCED_REDUNDANCY"}]}])


def test_buckets_are_encrypted_versioned_private_and_tls_only(synth: dict[str, Any]) -> None:
    t = synth["raw"]["data"]
    buckets = resources(t, "AWS::S3::Bucket")
    assert len(buckets) == len(synth["d"].of_kind("bucket"))
    for logical, b in buckets.items():
        p = b["Properties"]
        sse = p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert "KMSMasterKeyID" in sse["ServerSideEncryptionByDefault"]
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}
        assert p["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert b["DeletionPolicy"] == "Retain"
        policy = next(r for r in props(t, "AWS::S3::BucketPolicy") if r["Bucket"] == {"Ref": logical})
        denies = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false" for s in denies)
    for key in props(t, "AWS::KMS::Key"):
        assert key["EnableKeyRotation"] is True


def test_database_is_postgres_15_or_later_encrypted_with_backups(synth: dict[str, Any]) -> None:
    t = synth["raw"]["data"]
    (db,) = props(t, "AWS::RDS::DBInstance")
    assert db["Engine"] == "postgres"
    assert int(db["EngineVersion"].split(".")[0]) >= 15
    assert db["StorageEncrypted"] is True and "KmsKeyId" in db
    assert db["BackupRetentionPeriod"] >= 7  # automated backups: point-in-time recovery within the retention
    assert db["DeletionProtection"] is True and db["PubliclyAccessible"] is False
    (params,) = props(t, "AWS::RDS::DBParameterGroup")
    assert params["Parameters"]["rds.force_ssl"] == "1"
    # The database accepts PostgreSQL only from the API and the workers' security groups.
    ingress = props(synth["raw"]["compute"], "AWS::EC2::SecurityGroupIngress")
    to_db = [i for i in ingress if i.get("FromPort") == 5432]
    assert len(to_db) == 1 + len(synth["d"].of_kind("worker_group"))
    assert all("SourceSecurityGroupId" in i and "CidrIp" not in i for i in to_db)


# --- compute ----------------------------------------------------------------------------------------------------

def test_api_runs_on_fargate_behind_an_alb_with_waf(synth: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    t = synth["t"]["compute"]
    t.has_resource_properties("AWS::ECS::Service", {"LaunchType": "FARGATE", "LoadBalancers": Match.any_value()})
    t.has_resource_properties("AWS::ElasticLoadBalancingV2::TargetGroup", {"HealthCheckPath": "/healthz"})
    t.has_resource_properties("AWS::ElasticLoadBalancingV2::LoadBalancer", {"Scheme": "internet-facing"})
    waf = synth["d"].component("waf")
    t.has_resource_properties("AWS::WAFv2::WebACL", {"Scope": "REGIONAL", "Rules": Match.array_with([
        Match.object_like({"Statement": {"RateBasedStatement": Match.object_like(
            {"Limit": waf.props["rate_limit"], "AggregateKeyType": "IP"})}})])})
    (acl,) = props(synth["raw"]["compute"], "AWS::WAFv2::WebACL")
    managed = {r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Rules"]
               if "ManagedRuleGroupStatement" in r["Statement"]}
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= managed
    (assoc,) = props(synth["raw"]["compute"], "AWS::WAFv2::WebACLAssociation")
    lb = next(iter(resources(synth["raw"]["compute"], "AWS::ElasticLoadBalancingV2::LoadBalancer")))
    assert assoc["ResourceArn"] == {"Ref": lb}


def test_api_gets_the_user_pool_as_its_oidc_settings(synth: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    (task,) = props(synth["raw"]["compute"], "AWS::ECS::TaskDefinition")
    env = {e["Name"]: e["Value"] for e in task["ContainerDefinitions"][0]["Environment"]}
    oidc = synth["d"].oidc_env
    issuer = json.dumps(env[oidc["issuer"]])
    assert "cognito-idp" in issuer and "UserPool" in issuer
    assert ".well-known/jwks.json" in json.dumps(env[oidc["jwks_url"]])
    assert "UserPoolClient" in json.dumps(env[oidc["audiences"]]) or "ApiClient" in json.dumps(env[oidc["audiences"]])
    # The names are the ones the platform reads: a process given these values gets its OIDC settings from them.
    from reelforge.config import Settings

    monkeypatch.setenv(oidc["issuer"], "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc")
    monkeypatch.setenv(oidc["jwks_url"], "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc/.well-known/jwks.json")
    monkeypatch.setenv(oidc["audiences"], '["client123"]')
    monkeypatch.setenv(oidc["token_use"], env[oidc["token_use"]])
    s = Settings()
    assert s.oidc.issuer.endswith("us-east-1_abc") and s.oidc.audiences == ["client123"]
    assert s.oidc.jwks_url.endswith("/jwks.json") and s.oidc.token_use == ["id", "access"]
    assert env["REELFORGE_STORAGE__BACKEND"] == "s3"


def test_the_platform_reads_the_storage_and_metrics_settings_the_stacks_set(synth: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from reelforge.config import Settings
    from reelforge.domain import cloud

    (task,) = props(synth["raw"]["compute"], "AWS::ECS::TaskDefinition")
    env = {e["Name"]: e["Value"] for e in task["ContainerDefinitions"][0]["Environment"]}
    assert env["REELFORGE_STORAGE__S3_SSE"] == "aws:kms" and "KeyData" in json.dumps(env["REELFORGE_STORAGE__S3_KMS_KEY_ID"])
    assert env["REELFORGE_METRICS__CLOUDWATCH__ENABLED"] == "true"
    user_data = json.dumps([lt["LaunchTemplateData"]["UserData"]
                            for lt in props(synth["raw"]["compute"], "AWS::EC2::LaunchTemplate")])
    for name in ("REELFORGE_STORAGE__S3_SSE", "REELFORGE_STORAGE__S3_KMS_KEY_ID", "REELFORGE_METRICS__CLOUDWATCH__ENABLED"):
        assert user_data.count(name) == 2  # both worker groups
    if not hasattr(Settings().metrics, "cloudwatch"):
        pytest.skip("this tree's platform has no CloudWatch publisher settings (metrics.cloudwatch) yet")
    arn = "arn:aws:kms:us-east-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    monkeypatch.setenv("REELFORGE_STORAGE__S3_SSE", env["REELFORGE_STORAGE__S3_SSE"])
    monkeypatch.setenv("REELFORGE_STORAGE__S3_KMS_KEY_ID", arn)
    monkeypatch.setenv("REELFORGE_METRICS__CLOUDWATCH__ENABLED", env["REELFORGE_METRICS__CLOUDWATCH__ENABLED"])
    monkeypatch.setenv("REELFORGE_METRICS__CLOUDWATCH__REGION", "eu-west-1")
    s: Any = Settings()
    assert s.storage.s3_sse == "aws:kms" and s.storage.s3_kms_key_id == arn
    assert s.metrics.cloudwatch.enabled is True and s.metrics.cloudwatch.region == "eu-west-1"
    assert (s.metrics.cloudwatch.namespace or cloud.METRIC_NAMESPACE) == synth["d"].metric_namespace


def test_worker_groups_mix_spot_rebalance_and_scale_to_zero_on_the_queue(synth: dict[str, Any]) -> None:
    from reelforge.domain import cloud

    t = synth["raw"]["compute"]
    d = synth["d"]
    groups = resources(t, "AWS::AutoScaling::AutoScalingGroup")
    assert len(groups) == len(d.of_kind("worker_group")) == 2
    for g in groups.values():
        p = g["Properties"]
        assert p["MinSize"] == "0"
        assert p["CapacityRebalance"] is True
        dist = p["MixedInstancesPolicy"]["InstancesDistribution"]
        assert dist["OnDemandBaseCapacity"] == 0 and dist["OnDemandPercentageAboveBaseCapacity"] == 30
        assert dist["SpotAllocationStrategy"] == "price-capacity-optimized"
        assert len(p["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]) >= 2
    alarms = props(t, "AWS::CloudWatch::Alarm")
    for rc in ("cpu", "gpu"):
        mine = [a for a in alarms if any(
            m.get("MetricStat", {}).get("Metric", {}).get("Dimensions") == [{"Name": cloud.DIM_RESOURCE, "Value": rc}]
            and m["MetricStat"]["Metric"]["Namespace"] == cloud.METRIC_NAMESPACE
            and m["MetricStat"]["Metric"]["MetricName"] == cloud.QUEUE_DEPTH
            for m in a.get("Metrics", []))]
        assert len(mine) == 2, rc  # out on the queue, in when idle
        (out,) = [a for a in mine if a["ComparisonOperator"].startswith("GreaterThan")]
        (idle,) = [a for a in mine if a["ComparisonOperator"].startswith("LessThan")]
        # Out on waiting jobs only (a running job must not keep adding instances), in on waiting + running.
        assert [m["Expression"] for m in out["Metrics"] if "Expression" in m] == ["FILL(depth, 0)"]
        assert out["Threshold"] == 1
        expr = [m["Expression"] for m in idle["Metrics"] if "Expression" in m]
        assert expr == ["FILL(depth, 0) + FILL(running, 0)"] and idle["Threshold"] == 0
        assert any(m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == cloud.RUNNING for m in idle["Metrics"])
        assert idle["EvaluationPeriods"] == idle["DatapointsToAlarm"] == d.config.idle_minutes
    policies = props(t, "AWS::AutoScaling::ScalingPolicy")
    to_zero = [p for p in policies if p.get("AdjustmentType") == "PercentChangeInCapacity"]
    assert len(to_zero) == 2
    assert all(s["ScalingAdjustment"] == -100 for p in to_zero for s in p["StepAdjustments"]
               if s.get("MetricIntervalUpperBound") is not None)


def test_each_worker_group_runs_the_kinds_of_its_resource_class(synth: dict[str, Any]) -> None:
    d = synth["d"]
    templates = props(synth["raw"]["compute"], "AWS::EC2::LaunchTemplate")
    user_data = [json.dumps(lt["LaunchTemplateData"]["UserData"]) for lt in templates]
    gpu = next(u for u in user_data if "--gpus all" in u)
    cpu = next(u for u in user_data if "--gpus all" not in u)
    for kind in d.kinds_for("gpu"):
        assert f"--kind {kind}" in gpu and f"--kind {kind} " not in cpu and not cpu.endswith(f"--kind {kind}")
    for kind in d.kinds_for("cpu"):
        assert f"--kind {kind}" in cpu
    assert "image.generate" in d.kinds_for("gpu") and "video.upscale" in d.kinds_for("gpu")
    # An unhealthy worker container (the image's HEALTHCHECK) makes its instance unhealthy in the group, through a
    # permission on that group alone.
    assert all("set-instance-health" in u and "reelforge-worker" in u for u in user_data)
    names = {g["Properties"]["AutoScalingGroupName"]
             for g in resources(synth["raw"]["compute"], "AWS::AutoScaling::AutoScalingGroup").values()}
    health = [s for p in props(synth["raw"]["compute"], "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]
              if s["Action"] == "autoscaling:SetInstanceHealth"]
    assert len(health) == len(names) == 2
    assert {json.dumps(s["Resource"]).split("autoScalingGroupName/")[1].split('"')[0] for s in health} == names
    for lt in templates:
        assert lt["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
        assert all(b["Ebs"]["Encrypted"] for b in lt["LaunchTemplateData"]["BlockDeviceMappings"])


# --- auth, edge, observability ------------------------------------------------------------------------------------

def test_user_pool_and_public_client(synth: dict[str, Any]) -> None:
    t = synth["t"]["auth"]
    t.resource_count_is("AWS::Cognito::UserPool", 1)
    t.has_resource_properties("AWS::Cognito::UserPoolClient", {"GenerateSecret": False})
    for name in ("UserPoolId", "UserPoolClientId", "OidcIssuer"):
        t.has_output(name, {})


def test_outputs_reach_cloudfront_through_origin_access_control(synth: dict[str, Any]) -> None:
    t = synth["raw"]["edge"]
    (dist,) = props(t, "AWS::CloudFront::Distribution")
    origin = dist["DistributionConfig"]["Origins"][0]
    assert "OriginAccessControlId" in origin
    behavior = dist["DistributionConfig"]["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert behavior["TrustedKeyGroups"]
    assert props(t, "AWS::CloudFront::OriginAccessControl")[0]["OriginAccessControlConfig"]["SigningBehavior"] == \
        "always"
    grants = [s for p in props(synth["raw"]["data"], "AWS::S3::BucketPolicy") for s in p["PolicyDocument"]["Statement"]
              if s.get("Principal") == {"Service": "cloudfront.amazonaws.com"}]
    assert len(grants) == 1 and grants[0]["Action"] == "s3:GetObject" and "AWS:SourceArn" in json.dumps(grants[0])


def test_edge_needs_the_signing_key() -> None:
    need("aws_cdk")
    from reelforge_deploy.assembly import build
    from reelforge_deploy.description import DeployConfig

    with pytest.raises(ValueError, match="cdn_public_key"):
        build(DeployConfig())


def test_one_alarm_per_enabled_rule_with_the_settings_threshold(synth: dict[str, Any]) -> None:
    from reelforge.config import Settings
    from reelforge.domain import cloud
    from reelforge.services.alarms import RULES

    settings = Settings()
    alarms = {a["AlarmName"]: a for a in props(synth["raw"]["observability"], "AWS::CloudWatch::Alarm")}
    enabled = [r for r in RULES if getattr(settings.alarms, r).enabled]
    assert len(alarms) == len(enabled)
    for rule in enabled:
        a = alarms[f"{synth['d'].config.name}-{rule}"]
        assert a["Threshold"] == getattr(settings.alarms, rule).threshold
        assert a["Namespace"] == cloud.METRIC_NAMESPACE and a["MetricName"] == cloud.ALARM_VALUE
        assert a["Dimensions"] == [{"Name": cloud.DIM_RULE, "Value": rule}]
        assert a["AlarmActions"] and a["OKActions"]


def test_a_disabled_rule_has_no_alarm_and_a_threshold_follows_the_settings() -> None:
    from reelforge.config import Settings
    from reelforge_deploy.description import describe

    s = Settings(alarms={"queue_age": {"enabled": False, "threshold": 600}, "job_failure_rate": {"threshold": 0.2}})
    d = describe(settings=s)
    rules = {c.props["rule"]: c.props["threshold"] for c in d.of_kind("alarm")}
    assert "queue_age" not in rules and rules["job_failure_rate"] == 0.2


def test_topics_trail_budget_and_dashboard(synth: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    t = synth["t"]["observability"]
    raw = synth["raw"]["observability"]
    assert all("KmsMasterKeyId" in p for p in props(raw, "AWS::SNS::Topic"))
    t.has_resource_properties("AWS::CloudTrail::Trail", {"IsMultiRegionTrail": True, "EnableLogFileValidation": True,
                                                         "KMSKeyId": Match.any_value(), "IsLogging": True})
    (budget,) = props(raw, "AWS::Budgets::Budget")
    assert budget["Budget"]["BudgetLimit"]["Amount"] == synth["d"].config.budget_usd
    assert {n["Notification"]["NotificationType"] for n in budget["NotificationsWithSubscribers"]} == \
        {"ACTUAL", "FORECASTED"}
    assert all(n["Subscribers"][0]["SubscriptionType"] == "SNS" for n in budget["NotificationsWithSubscribers"])
    (dash,) = props(raw, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dash["DashboardBody"])
    for title in ("Cost", "Queue", "Jobs", "Errors", "EstimatedCharges", "QueueDepth", "AlarmRuleValue"):
        assert title in body
    t.has_output("MetricNamespace", {"Value": "Reelforge"})


def test_stack_outputs_configure_the_platform(synth: dict[str, Any]) -> None:
    outputs = {name: set(t.get("Outputs", {})) for name, t in synth["raw"].items()}
    assert {"BucketMediaName", "DatabaseEndpoint", "DatabaseSecretArn", "SecretAppArn"} <= outputs["data"]
    assert {"ApiUrl", "RepoApiUri", "RepoWorkerGpuUri", "RepoWorkerCpuUri"} <= outputs["compute"]
    assert {"OutputsDomain", "OutputsKeyPairId"} <= outputs["edge"]


# --- least privilege ----------------------------------------------------------------------------------------------

# Actions that have no resource-level permission in IAM: allowed on "*", each with its reason.
UNSCOPED = {"cloudwatch:PutMetricData", "ecr:GetAuthorizationToken"}


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of every identity and resource policy in a template (KMS key policies excepted: their
    `Resource: *` means the key itself, and their root statement is how IAM policies get to use the key)."""
    for logical, r in template.get("Resources", {}).items():
        p = r.get("Properties", {})
        docs = []
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append(p["PolicyDocument"])
        elif r["Type"] == "AWS::IAM::Role":
            docs += [x["PolicyDocument"] for x in p.get("Policies", [])]
        elif r["Type"] in ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy"):
            docs.append(p["PolicyDocument"])
        for doc in docs:
            for s in doc["Statement"]:
                yield logical, s


def violations(template: dict[str, Any]) -> list[str]:
    out = []
    for logical, s in _statements(template):
        if s["Effect"] != "Allow":
            continue
        actions = s.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if "NotAction" in s:
            out.append(f"{logical}: NotAction")
        for a in actions:
            if "*" in a:
                out.append(f"{logical}: wildcard action {a}")
        res = s.get("Resource", [])
        res = [res] if isinstance(res, str | dict) else res
        if "*" in res:
            unscoped = [a for a in actions if a not in UNSCOPED]
            if unscoped:
                out.append(f"{logical}: {unscoped} on every resource")
            if "cloudwatch:PutMetricData" in actions and "cloudwatch:namespace" not in json.dumps(s.get("Condition")):
                out.append(f"{logical}: PutMetricData without a namespace condition")
    return out


def test_no_wildcards_on_data_resources_and_resources_scoped(synth: dict[str, Any]) -> None:
    found = {name: violations(t) for name, t in synth["raw"].items()}
    assert found == {name: [] for name in synth["raw"]}, found
    # The walk sees the roles' statements (so the empty answer above means something).
    statements = [s for t in synth["raw"].values() for _, s in _statements(t)]
    assert any("s3:PutObject" in json.dumps(s) for s in statements)
    assert any("secretsmanager:GetSecretValue" in json.dumps(s) for s in statements)


@pytest.mark.parametrize("statement, why", [
    ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "wildcard action *"),
    ({"Effect": "Allow", "Action": ["s3:*"], "Resource": "arn:aws:s3:::b/*"}, "wildcard action s3:*"),
    ({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}, "on every resource"),
    ({"Effect": "Allow", "Action": "s3:GetObject*", "Resource": "arn:aws:s3:::b/*"}, "wildcard action"),
    ({"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}, "namespace condition"),
])
def test_the_privilege_walk_catches_broad_statements(statement: dict[str, Any], why: str) -> None:
    template = {"Resources": {"P": {"Type": "AWS::IAM::Policy", "Properties": {
        "PolicyDocument": {"Statement": [statement]}}}}}
    assert any(why in v for v in violations(template))


def test_cfn_lint_finds_no_errors(synth: dict[str, Any]) -> None:
    need("cfnlint")
    files = [str(p) for p in synth["files"].values()]
    r = subprocess.run([sys.executable, "-m", "cfnlint", "--format", "parseable", *files], capture_output=True,
                       text=True, timeout=240)
    errors = [line for line in r.stdout.splitlines() if ":E" in line or line.split(":")[-2:-1] == ["error"]]
    assert not r.returncode & 2 and not errors, r.stdout + r.stderr


def test_https_listener_with_a_certificate(tmp_path: Path) -> None:
    need("aws_cdk")
    from reelforge_deploy import diagrams
    from reelforge_deploy.assembly import build
    from reelforge_deploy.description import DeployConfig

    a = build(DeployConfig(certificate_arn=CERT, cdn_public_key_pem=diagrams.throwaway_public_key()),
              outdir=tmp_path)
    t = a.app.synth().get_stack_by_name(a.stacks["compute"].stack_name).template
    listeners = {p["Port"]: p for p in props(t, "AWS::ElasticLoadBalancingV2::Listener")}
    assert listeners[443]["Protocol"] == "HTTPS" and listeners[443]["Certificates"] == [{"CertificateArn": CERT}]
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"


# --- the diagrams follow the stacks ------------------------------------------------------------------------------

def test_diagrams_fingerprint_matches_the_stacks(synth: dict[str, Any]) -> None:
    from reelforge_deploy import diagrams

    recorded = json.loads(diagrams.FINGERPRINT.read_text())
    current = diagrams.fingerprint(synth["d"], synth["raw"])
    assert current == recorded, (
        "the deployment changed but its diagrams did not: run `make diagrams` and commit docs/img/ and img/")
    for app in synth["d"].applications:
        assert (diagrams.DOCS_IMG / f"app-{app.name}.png").is_file()
    assert diagrams.SR_IMAGE.is_file() and (diagrams.DOCS_IMG / "architecture.png").is_file()


def test_cdk_json_runs_the_app_file() -> None:
    config = json.loads((DEPLOY_AWS / "cdk.json").read_text())
    assert config["app"].endswith("app.py") and (DEPLOY_AWS / "app.py").is_file()
    package = json.loads((DEPLOY_AWS / "package.json").read_text())
    assert package["devDependencies"]["aws-cdk"] == "2.1148.1"
