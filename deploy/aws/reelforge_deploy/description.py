"""The deployment, described once: the CDK stacks create what this lists, and the diagrams draw it.

A `Deployment` is a list of components (what AWS resources stand for each part of the platform, in which stack),
the flows between them, and the installed applications with their job kinds and the resource class each one
needs. The stacks iterate the components of their stack (one construct per component, recorded under the
component's id), and `diagrams.py` draws the same components and flows, so a picture cannot show something
the stacks do not build, nor miss something they do (tests/deploy checks both ways, and a fingerprint of this
description and of the synthesized resources sits beside the pictures).

Everything the platform and the deployment must agree on comes from the platform itself: the lifecycle rules,
storage classes and metric names from `reelforge.domain.cloud`, the alarm rules from
`reelforge.services.alarms.RULES` with their thresholds from the settings, the OIDC setting names from
`reelforge.config`, the applications from their manifests. This module is the only one in deploy/aws that
imports the platform; the stacks read only what it returns.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from reelforge import __version__
from reelforge.domain import cloud

# The stacks, in deployment order (each may read the ones before it).
STACKS = ("network", "data", "auth", "compute", "edge", "observability")

# The interface endpoints the API and the workers call from private subnets (no NAT for AWS APIs): pulling
# images, writing logs and metrics, reading secrets and keys, assuming roles, publishing alarms.
INTERFACE_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("ecr.api", "ECR API"),
    ("ecr.dkr", "ECR registry"),
    ("logs", "CloudWatch Logs"),
    ("monitoring", "CloudWatch metrics"),
    ("secretsmanager", "Secrets Manager"),
    ("kms", "KMS"),
    ("sts", "STS"),
    ("sns", "SNS"),
)

# Exact actions the platform's processes call on the media bucket (the S3 adapter: objects, tags, multipart,
# listing by prefix). Listed one by one: tests refuse any wildcard in an allowed action.
S3_OBJECT_ACTIONS = (
    "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetObjectTagging", "s3:PutObjectTagging",
    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
)
S3_BUCKET_ACTIONS = ("s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation")
# Lifecycle configuration is applied by an operator (`reelforge storage apply-lifecycle`) or by this stack;
# the running platform never needs it.
KMS_DATA_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey")


@dataclass(frozen=True)
class DeployConfig:
    """What an operator chooses per installation (CDK context keys of the same names, see docs/deploy-aws.md)."""

    name: str = "reelforge"
    region: str = "us-east-1"
    vpc_cidr: str = "10.40.0.0/16"
    max_azs: int = 2
    nat_gateways: int = 1
    db_instance_class: str = "t4g.medium"
    db_engine_version: str = "16.13"  # PostgreSQL 15.2+ on RDS ships pgvector; the platform creates the extension
    db_allocated_gb: int = 50
    db_max_allocated_gb: int = 500
    db_multi_az: bool = True
    db_backup_days: int = 14
    api_cpu: int = 1024
    api_memory_mb: int = 2048
    api_min_tasks: int = 1
    api_max_tasks: int = 6
    cpu_instance_types: tuple[str, ...] = ("c7i.xlarge", "c6i.xlarge", "m7i.xlarge", "m6i.xlarge")
    gpu_instance_types: tuple[str, ...] = ("g5.xlarge", "g6.xlarge", "g4dn.xlarge", "g5.2xlarge")
    cpu_max_instances: int = 10
    gpu_max_instances: int = 8
    worker_concurrency_cpu: int = 4
    worker_concurrency_gpu: int = 1
    spot_percent: int = 70  # of the capacity above the on-demand base (0), as the designs ask
    idle_minutes: int = 15  # no backlog for this long: the worker group scales to zero
    waf_rate_limit: int = 2000  # requests per client address per 5 minutes at the ALB
    budget_usd: int = 1000
    alarm_email: str = ""
    certificate_arn: str = ""  # an ACM certificate for the ALB's HTTPS listener; empty: HTTP only (tests, demos)
    cdn_public_key_pem: str = ""  # the public half of the key that signs CloudFront URLs for outputs
    image_tag: str = __version__
    log_retention_days: int = 30

    @classmethod
    def from_context(cls, get: Any) -> DeployConfig:
        """Built from a CDK context reader (`node.try_get_context`): every field may be given by its name."""
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            raw = get(name)
            if raw is None:
                continue
            if isinstance(default, bool):
                values[name] = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                values[name] = int(raw)
            elif isinstance(default, tuple):
                values[name] = tuple(raw) if isinstance(raw, list | tuple) else tuple(str(raw).split(","))
            else:
                values[name] = str(raw)
        return cls(**values)


@dataclass(frozen=True)
class Component:
    """One part of the deployment: `kind` says what the stacks build for it and how the diagrams draw it."""

    id: str
    kind: str
    label: str
    stack: str
    props: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Flow:
    """Something that goes from one component to another (requests, bytes, metrics, notifications)."""

    source: str
    target: str
    label: str = ""
    control: bool = False  # scaling, alarms, audit: drawn dashed


@dataclass(frozen=True)
class JobKind:
    """One job kind and where it runs: `gpu` when any task of its pipeline asks for a GPU."""

    kind: str
    application: str  # "" for the core's own kinds
    description: str
    resource_class: str
    gpu_steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Application:
    """An installed application, from its manifest."""

    name: str
    title: str
    description: str
    job_kinds: tuple[JobKind, ...]
    calls: tuple[tuple[str, str], ...]  # (call name, resource class)


@dataclass(frozen=True)
class Deployment:
    config: DeployConfig
    components: tuple[Component, ...]
    flows: tuple[Flow, ...]
    applications: tuple[Application, ...]
    core_kinds: tuple[JobKind, ...]
    lifecycle_rules: tuple[Mapping[str, Any], ...]
    storage_classes: Mapping[str, str]
    oidc_env: Mapping[str, str]
    metric_namespace: str = cloud.METRIC_NAMESPACE
    metric_names: Mapping[str, str] = field(default_factory=lambda: {
        "queue_depth": cloud.QUEUE_DEPTH, "queue_age": cloud.QUEUE_AGE, "running": cloud.RUNNING,
        "alarm_value": cloud.ALARM_VALUE, "dim_kind": cloud.DIM_KIND, "dim_resource": cloud.DIM_RESOURCE,
        "dim_rule": cloud.DIM_RULE})

    def component(self, component_id: str) -> Component:
        for c in self.components:
            if c.id == component_id:
                return c
        raise KeyError(component_id)

    def in_stack(self, stack: str, kind: str | None = None) -> list[Component]:
        return [c for c in self.components if c.stack == stack and (kind is None or c.kind == kind)]

    def of_kind(self, kind: str) -> list[Component]:
        return [c for c in self.components if c.kind == kind]

    def job_kinds(self) -> list[JobKind]:
        out = list(self.core_kinds)
        for app in self.applications:
            out.extend(app.job_kinds)
        return out

    def kinds_for(self, resource_class: str) -> list[str]:
        """The job kinds a worker group of this resource class runs (`reelforge worker --kind ...`)."""
        return sorted(k.kind for k in self.job_kinds() if k.resource_class == resource_class)

    def to_json(self) -> str:
        """A canonical form (sorted keys), for the diagrams' fingerprint. The key and the address are left out:
        they change nothing the pictures show."""
        data = asdict(self)
        for private in ("cdn_public_key_pem", "alarm_email"):
            data["config"].pop(private, None)
        return json.dumps(data, sort_keys=True, default=str)

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


# --- the platform's side ------------------------------------------------------------------------------------------

def _pipelines(manifest: Any, settings: Any) -> Iterable[Any]:
    params = inspect.signature(manifest.pipelines).parameters
    return manifest.pipelines(settings) if params else manifest.pipelines()


def _job_kind(pipeline: Any, application: str) -> JobKind:
    gpu_steps = tuple(path for path, state in pipeline.graph.walk()
                      if getattr(getattr(state, "resources", None), "gpu", 0) > 0)
    return JobKind(kind=pipeline.kind, application=application, description=pipeline.description,
                   resource_class="gpu" if gpu_steps else "cpu", gpu_steps=gpu_steps)


def _resource_class(resources: Any) -> str:
    return "gpu" if resources is not None and getattr(resources, "gpu", 0) > 0 else "cpu"


def applications(settings: Any, manifests: Iterable[Any] | None = None) -> tuple[Application, ...]:
    """Every installed application (from the `reelforge.apps` entry points) with its job kinds and calls."""
    from reelforge.applications import discover

    out = []
    for m in (discover() if manifests is None else manifests):
        kinds = tuple(sorted((_job_kind(p, m.name) for p in _pipelines(m, settings)), key=lambda k: k.kind))
        calls = tuple(sorted((c.name, _resource_class(c.resources)) for c in m.calls(settings)))
        out.append(Application(name=m.name, title=m.title, description=m.description, job_kinds=kinds, calls=calls))
    return tuple(sorted(out, key=lambda a: a.name))


def core_kinds() -> tuple[JobKind, ...]:
    from reelforge.pipelines import system

    return tuple(sorted((_job_kind(p, "") for p in system.PIPELINES), key=lambda k: k.kind))


def alarm_rules(settings: Any) -> list[dict[str, Any]]:
    """The platform's alarm rules that are enabled, with their thresholds from the settings."""
    from reelforge.services.alarms import RULES

    out: list[dict[str, Any]] = []
    if not settings.alarms.enabled:
        return out
    for name, (description, unit) in RULES.items():
        rule = getattr(settings.alarms, name)
        if rule.enabled:
            out.append({"rule": name, "description": description, "unit": unit, "threshold": float(rule.threshold),
                        "window_s": float(rule.window_s)})
    return out


def oidc_env() -> dict[str, str]:
    """The environment variable names of the OIDC settings the API reads (`REELFORGE_OIDC__<FIELD>`)."""
    from reelforge.config import CoreSettings, OidcSettings

    prefix = str(CoreSettings.model_config.get("env_prefix", ""))
    delimiter = str(CoreSettings.model_config.get("env_nested_delimiter", "__"))
    section = next(name for name, f in CoreSettings.model_fields.items() if f.annotation is OidcSettings)
    fields = ("issuer", "jwks_url", "audiences", "token_use")
    for f in fields:
        if f not in OidcSettings.model_fields:
            raise KeyError(f"the platform's OIDC settings have no field {f!r}")
    return {f: f"{prefix}{section}{delimiter}{f}".upper() for f in fields}


# --- the deployment -----------------------------------------------------------------------------------------------

def describe(config: DeployConfig | None = None, settings: Any = None,
             manifests: Iterable[Any] | None = None) -> Deployment:
    """The deployment for these choices, this platform's settings and its installed applications."""
    if settings is None:
        from reelforge.config import Settings

        settings = Settings()
    config = config or DeployConfig()
    apps = applications(settings, manifests)
    core = core_kinds()
    all_kinds = list(core) + [k for a in apps for k in a.job_kinds]
    classes_used = {k.resource_class for k in all_kinds}

    c: list[Component] = []
    flows: list[Flow] = []

    # outside the deployment: drawn, never built
    c.append(Component("clients", "clients", "Browsers, API clients, CLI", "external"))

    # network
    c.append(Component("vpc", "vpc", "VPC (private subnets)", "network",
                       {"cidr": config.vpc_cidr, "max_azs": config.max_azs}))
    c.append(Component("nat", "nat_gateway", f"NAT gateway x{config.nat_gateways} (webhooks, model hubs)", "network",
                       {"count": config.nat_gateways}))
    c.append(Component("endpoint-s3", "gateway_endpoint", "S3 gateway endpoint", "network", {"service": "s3"}))
    for service, label in INTERFACE_ENDPOINTS:
        c.append(Component(f"endpoint-{service.replace('.', '-')}", "interface_endpoint", f"{label} endpoint",
                           "network", {"service": service}))

    # data
    c.append(Component("key-data", "kms_key", "KMS key: media, database, secrets", "data", {"purpose": "data"}))
    c.append(Component("key-audit", "kms_key", "KMS key: trail, logs, topics", "data", {"purpose": "audit"}))
    c.append(Component("bucket-media", "bucket", "Media bucket (every object the platform stores)", "data",
                       {"key": "key-data", "versioned": True, "lifecycle": "platform", "purpose": "media",
                        "areas": _media_areas()}))
    c.append(Component("bucket-audit", "bucket", "Audit bucket (CloudTrail)", "data",
                       {"key": "key-audit", "versioned": True, "lifecycle": "audit", "purpose": "audit",
                        "expire_days": 400}))
    c.append(Component("database", "database", f"RDS PostgreSQL {config.db_engine_version} + pgvector", "data",
                       {"key": "key-data", "engine_version": config.db_engine_version,
                        "instance_class": config.db_instance_class, "multi_az": config.db_multi_az,
                        "backup_days": config.db_backup_days, "database_name": "reelforge"}))
    c.append(Component("secret-app", "secret", "Instance secret (token and URL signing)", "data",
                       {"key": "key-data", "env": "REELFORGE_AUTH__JWT_SECRET"}))

    # auth
    c.append(Component("user-pool", "user_pool", "Cognito user pool + app client", "auth", {}))

    # compute
    c.append(Component("repo-api", "image_repository", "ECR: api image", "compute", {"dockerfile": "api"}))
    c.append(Component("repo-worker-cpu", "image_repository", "ECR: CPU worker image", "compute",
                       {"dockerfile": "worker-cpu"}))
    c.append(Component("repo-worker-gpu", "image_repository", "ECR: GPU worker image", "compute",
                       {"dockerfile": "worker-gpu"}))
    c.append(Component("waf", "web_acl", f"WAF: rate limit {config.waf_rate_limit}/5 min + AWS managed rules",
                       "compute", {"rate_limit": config.waf_rate_limit,
                                   "managed_rules": ("AWSManagedRulesCommonRuleSet",
                                                     "AWSManagedRulesKnownBadInputsRuleSet",
                                                     "AWSManagedRulesAmazonIpReputationList")}))
    c.append(Component("alb", "load_balancer", "Application Load Balancer", "compute",
                       {"https": bool(config.certificate_arn)}))
    c.append(Component("api", "api_service", "API + console (ECS Fargate)", "compute",
                       {"repository": "repo-api", "cpu": config.api_cpu, "memory_mb": config.api_memory_mb,
                        "min_tasks": config.api_min_tasks, "max_tasks": config.api_max_tasks,
                        "health_path": "/healthz", "port": 8000}))
    for rc in cloud.RESOURCE_CLASSES:
        if rc not in classes_used:
            continue
        gpu = rc == "gpu"
        c.append(Component(f"workers-{rc}", "worker_group",
                           f"{rc.upper()} workers (EC2 Auto Scaling, {config.spot_percent}% Spot, 0..."
                           f"{config.gpu_max_instances if gpu else config.cpu_max_instances})", "compute",
                           {"resource_class": rc, "repository": f"repo-worker-{rc}",
                            "instance_types": config.gpu_instance_types if gpu else config.cpu_instance_types,
                            "max": config.gpu_max_instances if gpu else config.cpu_max_instances,
                            "concurrency": config.worker_concurrency_gpu if gpu else config.worker_concurrency_cpu,
                            "spot_percent": config.spot_percent, "idle_minutes": config.idle_minutes,
                            "kinds": tuple(sorted(k.kind for k in all_kinds if k.resource_class == rc)),
                            "scale_metric": {"namespace": cloud.METRIC_NAMESPACE,
                                             "metrics": (cloud.QUEUE_DEPTH, cloud.RUNNING),
                                             "dimension": {cloud.DIM_RESOURCE: rc}}}))

    # edge
    c.append(Component("cdn", "cdn", "CloudFront (Origin Access Control, signed URLs) for outputs", "edge",
                       {"origin": "bucket-media"}))

    # observability
    c.append(Component("topic-alarms", "topic", "SNS: alarms", "observability", {"key": "key-audit"}))
    c.append(Component("topic-budget", "topic", "SNS: budget alerts", "observability", {"key": "key-audit"}))
    c.append(Component("dashboard", "dashboard", "CloudWatch dashboard: cost, queue, jobs, errors", "observability",
                       {"namespace": cloud.METRIC_NAMESPACE}))
    for rule in alarm_rules(settings):
        c.append(Component(f"alarm-{rule['rule'].replace('_', '-')}", "alarm",
                           f"Alarm {rule['rule']} > {rule['threshold']:g} {rule['unit']}", "observability",
                           {**rule, "metric": cloud.ALARM_VALUE, "dimension": cloud.DIM_RULE,
                            "namespace": cloud.METRIC_NAMESPACE, "topic": "topic-alarms"}))
    c.append(Component("trail", "trail", "CloudTrail (all regions, validated)", "observability",
                       {"bucket": "bucket-audit", "key": "key-audit"}))
    c.append(Component("budget", "budget", f"AWS Budgets: {config.budget_usd} USD/month", "observability",
                       {"limit_usd": config.budget_usd, "topic": "topic-budget",
                        "thresholds": ((80, "ACTUAL"), (100, "FORECASTED"))}))

    # flows
    flows += [
        Flow("clients", "waf", "HTTPS"), Flow("waf", "alb", "allowed requests"), Flow("alb", "api", "HTTP :8000"),
        Flow("clients", "cdn", "signed output URLs"), Flow("cdn", "bucket-media", "OAC (SigV4)"),
        Flow("clients", "user-pool", "sign-in"), Flow("api", "user-pool", "JWKS (OIDC)", control=True),
        Flow("api", "database", "jobs, accounts"), Flow("api", "endpoint-s3", "presigned, multipart"),
        Flow("endpoint-s3", "bucket-media", "objects"), Flow("api", "secret-app", "read at start", control=True),
        Flow("api", "nat", "webhooks"),
    ]
    for rc in cloud.RESOURCE_CLASSES:
        wid = f"workers-{rc}"
        if rc not in classes_used:
            continue
        flows += [Flow(wid, "database", "claim jobs (leases)"), Flow(wid, "endpoint-s3", "media"),
                  Flow(wid, "endpoint-monitoring", f"{cloud.QUEUE_DEPTH} {cloud.DIM_RESOURCE}={rc}", control=True),
                  Flow(f"repo-worker-{rc}", wid, "image"),
                  Flow("endpoint-monitoring", wid, "scale on backlog, to 0 when idle", control=True)]
    flows += [Flow("repo-api", "api", "image"),
              Flow("api", "endpoint-monitoring", f"{cloud.ALARM_VALUE}, queue metrics", control=True)]
    for a in (x for x in c if x.kind == "alarm"):
        flows.append(Flow(a.id, "topic-alarms", "ALARM / OK", control=True))
    flows += [Flow("budget", "topic-budget", "80% actual, 100% forecast", control=True),
              Flow("trail", "bucket-audit", "API activity", control=True),
              Flow("key-data", "bucket-media", "SSE-KMS", control=True),
              Flow("key-data", "database", "encrypted storage", control=True),
              Flow("key-audit", "bucket-audit", "SSE-KMS", control=True)]

    return Deployment(config=config, components=tuple(c), flows=tuple(flows), applications=apps, core_kinds=core,
                      lifecycle_rules=tuple(cloud.lifecycle_rules()), storage_classes=dict(cloud.STORAGE_CLASS),
                      oidc_env=oidc_env())


def _media_areas() -> tuple[tuple[str, str, str], ...]:
    """What the media bucket holds, by lifecycle class: (lifecycle class, storage class written, what it means)."""
    from reelforge.domain.types import Lifecycle

    meaning = {
        Lifecycle.hot: "uploads and outputs",
        Lifecycle.infrequent: "kept, rarely read",
        Lifecycle.archive: "archived, readable by GET",
        Lifecycle.temporary: "frames, chunks, scratch",
    }
    return tuple((str(lc), cloud.STORAGE_CLASS[lc], meaning.get(lc, "")) for lc in Lifecycle)
