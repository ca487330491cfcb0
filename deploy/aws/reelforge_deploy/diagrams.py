"""Architecture diagrams drawn from the deployment description (the one the CDK stacks build from).

    make diagrams        # or: PYTHONPATH=deploy/aws python -m reelforge_deploy.diagrams

writes docs/img/architecture.png (the whole platform), docs/img/app-<name>.png (one per installed application),
img/genai-video-super-resolution-architecture.png (the super-resolution design), and
docs/img/architecture.fingerprint.json: a digest of the description and of each synthesized stack's resources.
tests/deploy compares that fingerprint with the current code, so a stack that changes without its diagrams fails
the tests until `make diagrams` is run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from diagrams import Cluster, Diagram, Edge, Node
from diagrams.aws.compute import EC2, ECR, EC2AutoScaling, EC2SpotInstance, Fargate
from diagrams.aws.cost import Budgets
from diagrams.aws.database import RDSPostgresqlInstance
from diagrams.aws.general import Users
from diagrams.aws.integration import SNS, StepFunctions
from diagrams.aws.management import Cloudtrail, Cloudwatch, CloudwatchAlarm
from diagrams.aws.network import ALB, VPC, CloudFront, Endpoint, NATGateway, Privatelink
from diagrams.aws.security import KMS, WAF, Cognito, IAMRole, SecretsManager
from diagrams.aws.storage import S3, S3Glacier, SimpleStorageServiceS3Bucket

from .description import STACKS, Application, DeployConfig, Deployment, describe

ROOT = Path(__file__).resolve().parents[3]
DOCS_IMG = ROOT / "docs" / "img"
SR_IMAGE = ROOT / "img" / "genai-video-super-resolution-architecture.png"
FINGERPRINT = DOCS_IMG / "architecture.fingerprint.json"
CDK_JSON = ROOT / "deploy" / "aws" / "cdk.json"

# How each kind of component is drawn (an AWS icon).
ICONS: dict[str, type[Node]] = {
    "clients": Users, "vpc": VPC, "nat_gateway": NATGateway, "gateway_endpoint": Endpoint,
    "interface_endpoint": Privatelink, "kms_key": KMS, "bucket": S3, "database": RDSPostgresqlInstance,
    "secret": SecretsManager, "user_pool": Cognito, "image_repository": ECR, "web_acl": WAF, "load_balancer": ALB,
    "api_service": Fargate, "worker_group": EC2AutoScaling, "cdn": CloudFront, "topic": SNS,
    "dashboard": Cloudwatch, "alarm": CloudwatchAlarm, "trail": Cloudtrail, "budget": Budgets,
}
STACK_TITLES = {"external": "Outside", "network": "network stack", "data": "data stack", "auth": "auth stack",
                "compute": "compute stack", "edge": "edge stack", "observability": "observability stack"}
GRAPH = {"fontsize": "22", "pad": "0.4", "nodesep": "0.45", "ranksep": "0.9", "splines": "spline"}
NODE = {"fontsize": "11"}
CONTROL = {"style": "dashed", "color": "#7a5195"}
DATA = {"color": "#2f4b7c"}
GPU_COLOR = "#d45087"
CPU_COLOR = "#2f4b7c"


def _edge(label: str, control: bool) -> Edge:
    return Edge(label=label, fontsize="9", **(CONTROL if control else DATA))


def _legend(extra: Iterable[tuple[str, type[Node]]] = ()) -> None:
    with Cluster("Legend", graph_attr={"bgcolor": "#f7f7f7", "fontsize": "13"}):
        a = Node("", shape="point", width="0.1")
        b = Node("requests, bytes", shape="plaintext", fontsize="10")
        c = Node("", shape="point", width="0.1")
        e = Node("scaling, alarms, keys, audit", shape="plaintext", fontsize="10")
        a >> Edge(**DATA) >> b
        c >> Edge(**CONTROL) >> e
        for label, icon in extra:
            icon(label, fontsize="10")


def _component_nodes(d: Deployment, skip: Iterable[str] = ()) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    skipped = set(skip)
    for stack in ("external", *STACKS):
        members = [c for c in d.components if c.stack == stack and c.kind not in skipped]
        if not members:
            continue
        with Cluster(STACK_TITLES[stack], graph_attr={"fontsize": "14"}):
            for c in members:
                nodes[c.id] = ICONS[c.kind](_wrap(c.label), **NODE)
    return nodes


def _wrap(text: str, width: int = 26) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    if line:
        lines.append(line)
    return "\n".join(lines)


def draw_platform(d: Deployment, path: Path, outformat: str | list[str] = "png") -> None:
    """Every component and flow of the description, grouped by stack."""
    with Diagram(f"{d.config.name} on AWS: the whole platform", filename=str(path.with_suffix("")), show=False,
                 outformat=outformat, direction="LR", graph_attr=GRAPH):
        nodes = _component_nodes(d)
        for f in d.flows:
            nodes[f.source] >> _edge(f.label, f.control) >> nodes[f.target]
        _legend()


def draw_application(d: Deployment, app: Application, path: Path, outformat: str | list[str] = "png") -> None:
    """One application: its job kinds (and the worker group each needs), its calls, and the shared parts."""
    groups = {c.props["resource_class"]: c for c in d.of_kind("worker_group")}
    with Diagram(f"{app.title} ({app.name}) on {d.config.name}", filename=str(path.with_suffix("")), show=False,
                 outformat=outformat, direction="LR", graph_attr=GRAPH):
        clients = Users("Browsers, API clients", **NODE)
        api = Fargate(_wrap(d.component("api").label), **NODE)
        db = RDSPostgresqlInstance("jobs queue\n(PostgreSQL)", **NODE)
        media = S3(_wrap(d.component("bucket-media").label), **NODE)
        used = {k.resource_class for k in app.job_kinds} | {rc for _, rc in app.calls}
        workers = {rc: EC2AutoScaling(_wrap(g.label), **NODE) for rc, g in groups.items() if rc in used}
        clients >> _edge("HTTPS", False) >> api
        api >> _edge("submit", False) >> db
        api >> _edge("presigned, multipart", False) >> media
        with Cluster(f"{app.title}: job kinds", graph_attr={"fontsize": "14"}):
            kinds = []
            for k in app.job_kinds:
                color = GPU_COLOR if k.resource_class == "gpu" else CPU_COLOR
                gpu = f"\nGPU: {', '.join(k.gpu_steps)}" if k.gpu_steps else ""
                kinds.append((k, StepFunctions(f"{k.kind}\n[{k.resource_class}]{gpu}", fontcolor=color, **NODE)))
        for k, node in kinds:
            db >> _edge("claim", False) >> node
            node >> _edge("runs on", True) >> workers[k.resource_class]
        if app.calls:
            with Cluster(f"{app.title}: interactive calls", graph_attr={"fontsize": "14"}):
                calls = [(rc, EC2(f"{name}\n[{rc}]", **NODE)) for name, rc in app.calls]
            for rc, node in calls:
                api >> _edge("signed HTTP", False) >> node
                node >> _edge("served by", True) >> workers[rc]
        for w in workers.values():
            w >> _edge("media", False) >> media
        _legend([("job kind (pipeline)", StepFunctions)])


def draw_super_resolution(d: Deployment, path: Path, outformat: str | list[str] = "png") -> None:
    """The video super-resolution design: S3-only storage with lifecycle tiers, Spot GPU workers that scale to
    zero, least privilege, private endpoints, encryption, monitoring."""
    media = d.component("bucket-media")
    gpu = next((c for c in d.of_kind("worker_group") if c.props["resource_class"] == "gpu"), None)
    areas = {lc: (sc, meaning) for lc, sc, meaning in media.props["areas"]}
    upscale_kinds = [k for a in d.applications if a.name == "upscale" for k in a.job_kinds]
    with Diagram("GenAI video super-resolution on AWS", filename=str(path.with_suffix("")), show=False,
                 outformat=outformat, direction="LR", graph_attr=GRAPH):
        clients = Users("Browsers, API clients", **NODE)
        with Cluster("Edge (TLS in transit)"):
            waf = WAF(_wrap(d.component("waf").label), **NODE)
            cdn = CloudFront("CloudFront + OAC\nsigned URLs for finals", **NODE)
        with Cluster("VPC: private subnets"):
            alb = ALB("ALB (HTTPS)", **NODE)
            api = Fargate("API on Fargate\npresigned + multipart URLs", **NODE)
            db = RDSPostgresqlInstance("job queue, checkpoints\n(RDS, encrypted)", **NODE)
            s3_endpoint = Endpoint("S3 gateway endpoint", **NODE)
            endpoints = Privatelink("interface endpoints:\nECR, Logs, CloudWatch,\nSecrets, KMS, STS, SNS", **NODE)
            with Cluster(f"GPU workers: Spot {gpu.props['spot_percent'] if gpu else 0}% / On-Demand, "
                         "capacity rebalancing"):
                spot = EC2SpotInstance("Spot GPU instances\n" + ", ".join(gpu.props["instance_types"][:3])
                                       if gpu else "GPU instances", **NODE)
                cache = EC2("local cache:\nscratch frames on\nencrypted EBS", **NODE)
                kinds = ", ".join(k.kind for k in upscale_kinds) or "upscale jobs"
                steps = StepFunctions(f"{kinds}\nprobe > chunks > upscale\n> concat > remux", **NODE)
                idle = EC2AutoScaling(f"idle {gpu.props['idle_minutes'] if gpu else 15} min: scale to 0\n"
                                      "(no standing endpoint)", **NODE)
            roles = IAMRole("least-privilege roles:\nexact S3/KMS/Secrets\nactions on named ARNs", **NODE)
        with Cluster("S3 only: one media bucket, SSE-KMS, versioned, TLS-only, public access blocked"):
            sources = S3(f"sources (uploads)\n{_tiers(d, 'hot')}", **NODE)
            frames = SimpleStorageServiceS3Bucket(f"frames, chunks\n{areas['temporary'][0]}, expire "
                                                  f"{_expire_days(d)} d", **NODE)
            finals = S3(f"finals (outputs)\n{_tiers(d, 'hot')}", **NODE)
            glacier = S3Glacier("lifecycle rules by tag\n" + ", ".join(sorted({sc for sc, _ in areas.values()})),
                                **NODE)
        key = KMS("KMS keys (rotation)\nat rest: S3, RDS, EBS", **NODE)
        with Cluster("Observability"):
            metrics = Cloudwatch("dashboard: cost, queue,\njobs, errors", **NODE)
            alarms = CloudwatchAlarm(f"{len(d.of_kind('alarm'))} alarms from the\nplatform's rules", **NODE)
            sns = SNS("SNS alerts", **NODE)
            trail = Cloudtrail("CloudTrail", **NODE)
            budget = Budgets("Budgets", **NODE)
        clients >> _edge("HTTPS", False) >> waf >> _edge("", False) >> alb >> _edge("", False) >> api
        clients >> _edge("presigned PUT (multipart)", False) >> sources
        clients >> _edge("signed GET", False) >> cdn >> _edge("OAC", False) >> finals
        api >> _edge("enqueue", False) >> db
        db >> _edge("claim (lease)", False) >> steps
        steps >> _edge("", False) >> spot
        spot >> _edge("", False) >> cache
        spot >> _edge("", False) >> s3_endpoint
        s3_endpoint >> _edge("read", False) >> sources
        s3_endpoint >> _edge("write", False) >> frames
        s3_endpoint >> _edge("write", False) >> finals
        for b in (sources, frames, finals):
            glacier >> _edge("", True) >> b
            key >> _edge("", True) >> b
        spot >> _edge("metrics", True) >> endpoints >> _edge("", True) >> metrics
        metrics >> _edge("queue depth (gpu)", True) >> idle >> _edge("scale", True) >> spot
        metrics >> _edge("", True) >> alarms >> _edge("", True) >> sns
        budget >> _edge("", True) >> sns
        roles >> _edge("", True) >> spot
        trail >> _edge("", True) >> key
        _legend()


def _tiers(d: Deployment, lifecycle: str) -> str:
    """"STANDARD → STANDARD_IA 30 d → GLACIER_IR 90 d" for a lifecycle class, from the bucket's rules."""
    start = next((sc for lc, sc, _ in d.component("bucket-media").props["areas"] if lc == lifecycle), "STANDARD")
    steps = [start]
    for rule in d.lifecycle_rules:
        if rule.get("Filter", {}).get("Tag", {}).get("Value") == lifecycle:
            steps += [f"{t['StorageClass']} {t['Days']} d" for t in rule.get("Transitions", [])]
    return " → ".join(steps)


def _expire_days(d: Deployment) -> int:
    for rule in d.lifecycle_rules:
        if rule.get("Filter", {}).get("Tag", {}).get("Value") == "temporary" and "Expiration" in rule:
            return int(rule["Expiration"]["Days"])
    return 0


# --- the fingerprint --------------------------------------------------------------------------------------------

def default_config() -> DeployConfig:
    """The configuration cdk.json's context gives (what the pictures show)."""
    context = json.loads(CDK_JSON.read_text()).get("context", {})
    return DeployConfig.from_context(context.get)


def stack_resources(templates: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """`logical id:type` of every resource, per stack name, sorted."""
    return {name: sorted(f"{lid}:{r['Type']}" for lid, r in t.get("Resources", {}).items())
            for name, t in templates.items()}


def fingerprint(d: Deployment, templates: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    def digest(items: Iterable[str]) -> str:
        return hashlib.sha256("\n".join(items).encode()).hexdigest()

    return {"description": d.digest(),
            "stacks": {name: digest(items) for name, items in sorted(stack_resources(templates).items())},
            "applications": sorted(a.name for a in d.applications)}


def synth_templates(d: Deployment, outdir: Path) -> dict[str, dict[str, Any]]:
    """Synthesize every stack (offline) and return its template by stack name."""
    from .assembly import build

    if not d.config.cdn_public_key_pem:  # the pictures need no real key: any key gives the same resources
        from dataclasses import replace

        d = replace(d, config=replace(d.config, cdn_public_key_pem=throwaway_public_key()))
    assembly = build(deployment=d, outdir=outdir)
    cloud = assembly.app.synth()
    return {name: cloud.get_stack_by_name(stack.stack_name).template for name, stack in assembly.stacks.items()}


def throwaway_public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def render_all(d: Deployment, docs_img: Path = DOCS_IMG, sr_image: Path = SR_IMAGE,
               outformat: str | list[str] = "png") -> list[Path]:
    docs_img.mkdir(parents=True, exist_ok=True)
    sr_image.parent.mkdir(parents=True, exist_ok=True)
    written = [docs_img / "architecture.png"]
    draw_platform(d, written[0], outformat)
    for app in d.applications:
        p = docs_img / f"app-{app.name}.png"
        draw_application(d, app, p, outformat)
        written.append(p)
    draw_super_resolution(d, sr_image, outformat)
    written.append(sr_image)
    return written


def main() -> int:
    import tempfile

    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    d = describe(default_config())
    for old in DOCS_IMG.glob("app-*.png"):
        old.unlink()  # an application no longer installed loses its picture
    written = render_all(d)
    with tempfile.TemporaryDirectory() as tmp:
        templates = synth_templates(d, Path(tmp))
    FINGERPRINT.write_text(json.dumps(fingerprint(d, templates), indent=2, sort_keys=True) + "\n")
    for p in [*written, FINGERPRINT]:
        print(p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
