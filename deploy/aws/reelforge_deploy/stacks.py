"""The CDK stacks: each builds the components of its stack in the deployment description, one construct per
component, recorded in `built` under the component's id (tests check that every component was built).

Roles are written out action by action (no `grant*` helpers, whose actions carry wildcards such as
`s3:GetObject*`), and every statement names its resources.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from .description import (
    KMS_DATA_ACTIONS,
    S3_BUCKET_ACTIONS,
    S3_OBJECT_ACTIONS,
    Component,
    Deployment,
)

# S3 API storage class names (as `reelforge.domain.cloud` writes them) to CDK's.
STORAGE_CLASSES: dict[str, s3.StorageClass] = {
    "STANDARD_IA": s3.StorageClass.INFREQUENT_ACCESS,
    "ONEZONE_IA": s3.StorageClass.ONE_ZONE_INFREQUENT_ACCESS,
    "INTELLIGENT_TIERING": s3.StorageClass.INTELLIGENT_TIERING,
    "GLACIER_IR": s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
    "GLACIER": s3.StorageClass.GLACIER,
    "DEEP_ARCHIVE": s3.StorageClass.DEEP_ARCHIVE,
}

# Log retention choices (days) the description may name.
RETENTION = {7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
             90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS,
             365: logs.RetentionDays.ONE_YEAR}

# The worker's interactive-call server port (settings `calls.port`): the API dials workers on it.
CALL_PORT = 8700
API_PORT = 8000


def lifecycle_rules(rules: Any) -> list[s3.LifecycleRule]:
    """The platform's lifecycle rules (S3 API shape, `reelforge.domain.cloud.lifecycle_rules()`) as CDK rules."""
    out = []
    for r in rules:
        f = r.get("Filter", {})
        tag = f.get("Tag")
        prefix = f.get("Prefix") or None
        kwargs: dict[str, Any] = {"id": r["ID"], "enabled": r.get("Status") == "Enabled"}
        if tag:
            kwargs["tag_filters"] = {tag["Key"]: tag["Value"]}
        if prefix:
            kwargs["prefix"] = prefix
        if "Expiration" in r:
            kwargs["expiration"] = cdk.Duration.days(r["Expiration"]["Days"])
        if "Transitions" in r:
            kwargs["transitions"] = [
                s3.Transition(storage_class=STORAGE_CLASSES[t["StorageClass"]],
                              transition_after=cdk.Duration.days(t["Days"]))
                for t in r["Transitions"]]
        if "AbortIncompleteMultipartUpload" in r:
            kwargs["abort_incomplete_multipart_upload_after"] = cdk.Duration.days(
                r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        if "NoncurrentVersionExpiration" in r:
            kwargs["noncurrent_version_expiration"] = cdk.Duration.days(
                r["NoncurrentVersionExpiration"]["NoncurrentDays"])
        unknown = set(r) - {"ID", "Status", "Filter", "Expiration", "Transitions", "AbortIncompleteMultipartUpload",
                            "NoncurrentVersionExpiration"}
        if unknown:
            raise ValueError(f"lifecycle rule {r['ID']}: no translation for {sorted(unknown)}")
        out.append(s3.LifecycleRule(**kwargs))
    return out


class _Base(cdk.Stack):
    stack_name_part = ""

    def __init__(self, scope: Construct, d: Deployment, **kwargs: Any) -> None:
        cfg = d.config
        super().__init__(scope, f"{_title(cfg.name)}{_title(self.stack_name_part)}",
                         env=cdk.Environment(region=cfg.region),
                         description=f"{cfg.name}: {self.stack_name_part} (deploy/aws)", **kwargs)
        self.d = d
        self.built: dict[str, Any] = {}
        cdk.Tags.of(self).add("application", cfg.name)

    def components(self, kind: str | None = None) -> list[Component]:
        return self.d.in_stack(self.stack_name_part, kind)

    def output(self, name: str, value: str, description: str) -> None:
        cdk.CfnOutput(self, name, value=value, description=description)


def _title(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in text.replace("_", "-").split("-"))


class NetworkStack(_Base):
    stack_name_part = "network"

    def __init__(self, scope: Construct, d: Deployment) -> None:
        super().__init__(scope, d)
        (vpc_c,) = self.components("vpc")
        nat = self.components("nat_gateway")
        self.vpc = ec2.Vpc(
            self, "Vpc", ip_addresses=ec2.IpAddresses.cidr(vpc_c.props["cidr"]), max_azs=vpc_c.props["max_azs"],
            nat_gateways=nat[0].props["count"] if nat else 0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                        cidr_mask=20),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ])
        self.built[vpc_c.id] = self.vpc
        for n in nat:
            self.built[n.id] = self.vpc.public_subnets
        private = [ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                   ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)]
        for c in self.components("gateway_endpoint"):
            if c.props["service"] != "s3":
                raise ValueError(f"{c.id}: only the S3 gateway endpoint is described")
            self.built[c.id] = self.vpc.add_gateway_endpoint(_title(c.id), service=ec2.GatewayVpcEndpointAwsService.S3,
                                                             subnets=private)
        for c in self.components("interface_endpoint"):
            self.built[c.id] = self.vpc.add_interface_endpoint(
                _title(c.id), service=ec2.InterfaceVpcEndpointAwsService(c.props["service"]),
                private_dns_enabled=True,
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS))
        self.output("VpcId", self.vpc.vpc_id, "The VPC")


class DataStack(_Base):
    stack_name_part = "data"

    def __init__(self, scope: Construct, d: Deployment, network: NetworkStack) -> None:
        super().__init__(scope, d)
        self.keys: dict[str, kms.Key] = {}
        for c in self.components("kms_key"):
            key = kms.Key(self, _title(c.id), enable_key_rotation=True,
                          alias=f"alias/{d.config.name}-{c.props['purpose']}",
                          description=c.label, removal_policy=cdk.RemovalPolicy.RETAIN)
            self.keys[c.id] = key
            self.built[c.id] = key
            if c.props["purpose"] == "audit":
                self._audit_key_policy(key)
        self.buckets: dict[str, s3.Bucket] = {}
        for c in self.components("bucket"):
            rules = lifecycle_rules(d.lifecycle_rules) if c.props["lifecycle"] == "platform" else [
                s3.LifecycleRule(id="audit-expire", expiration=cdk.Duration.days(c.props["expire_days"]),
                                 noncurrent_version_expiration=cdk.Duration.days(30))]
            bucket = s3.Bucket(
                self, _title(c.id), encryption=s3.BucketEncryption.KMS, encryption_key=self.keys[c.props["key"]],
                bucket_key_enabled=True, versioned=c.props["versioned"],
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, minimum_tls_version=1.2,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, lifecycle_rules=rules,
                removal_policy=cdk.RemovalPolicy.RETAIN)
            self.buckets[c.id] = bucket
            self.built[c.id] = bucket
            self.output(f"{_title(c.id)}Name", bucket.bucket_name, c.label)
        media = self._media_bucket()
        # CloudFront's Origin Access Control reads outputs; the distribution lives in the edge stack, which reads
        # this one, so the grant names this account's distributions rather than one ARN (no cycle).
        media.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudFrontOacRead", actions=["s3:GetObject"], resources=[media.arn_for_objects("*")],
            principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
            conditions={"StringLike": {"AWS:SourceArn": f"arn:aws:cloudfront::{self.account}:distribution/*"}}))
        data_key = self.keys[self._one("bucket-media").props["key"]]
        data_key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudFrontOacDecrypt", actions=["kms:Decrypt"], resources=["*"],
            principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
            conditions={"StringLike": {"AWS:SourceArn": f"arn:aws:cloudfront::{self.account}:distribution/*"}}))

        self.db_security_group = ec2.SecurityGroup(self, "DatabaseSecurityGroup", vpc=network.vpc,
                                                   description="PostgreSQL: from the API and the workers only",
                                                   allow_all_outbound=False)
        (db_c,) = self.components("database")
        version = db_c.props["engine_version"]
        params = rds.ParameterGroup(
            self, "DatabaseParameters",
            engine=rds.DatabaseInstanceEngine.postgres(
                version=rds.PostgresEngineVersion.of(version, version.split(".")[0])),
            parameters={"rds.force_ssl": "1", "shared_preload_libraries": "pg_stat_statements"})
        self.database = rds.DatabaseInstance(
            self, "Database",
            engine=rds.DatabaseInstanceEngine.postgres(
                version=rds.PostgresEngineVersion.of(version, version.split(".")[0])),
            instance_type=ec2.InstanceType(db_c.props["instance_class"]), vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.db_security_group],
            credentials=rds.Credentials.from_generated_secret("reelforge", encryption_key=self.keys[db_c.props["key"]]),
            database_name=db_c.props["database_name"], storage_encrypted=True,
            storage_encryption_key=self.keys[db_c.props["key"]], multi_az=db_c.props["multi_az"],
            allocated_storage=d.config.db_allocated_gb, max_allocated_storage=d.config.db_max_allocated_gb,
            storage_type=rds.StorageType.GP3, backup_retention=cdk.Duration.days(db_c.props["backup_days"]),
            copy_tags_to_snapshot=True, deletion_protection=True, removal_policy=cdk.RemovalPolicy.SNAPSHOT,
            parameter_group=params, cloudwatch_logs_exports=["postgresql"], auto_minor_version_upgrade=True,
            publicly_accessible=False, instance_identifier=f"{d.config.name}-db")
        # The exported log's group, made here (encrypted, with its retention) rather than by a custom resource.
        db_logs = logs.LogGroup(self, "DatabaseLogs", log_group_name=f"/aws/rds/instance/{d.config.name}-db/postgresql",
                                encryption_key=self.keys["key-audit"],
                                retention=RETENTION[d.config.log_retention_days],
                                removal_policy=cdk.RemovalPolicy.RETAIN)
        self.database.node.add_dependency(db_logs)
        self.built[db_c.id] = self.database
        assert self.database.secret is not None
        self.db_secret = self.database.secret
        self.output("DatabaseEndpoint", self.database.db_instance_endpoint_address, "PostgreSQL host")
        self.output("DatabaseSecretArn", self.db_secret.secret_arn, "Secrets Manager: the database credentials")

        self.secrets: dict[str, secretsmanager.Secret] = {}
        for c in self.components("secret"):
            secret = secretsmanager.Secret(
                self, _title(c.id), description=c.label, encryption_key=self.keys[c.props["key"]],
                generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64,
                                                                            exclude_punctuation=True))
            self.secrets[c.id] = secret
            self.built[c.id] = secret
            self.output(f"{_title(c.id)}Arn", secret.secret_arn, c.label)

    def _one(self, component_id: str) -> Component:
        return self.d.component(component_id)

    def _media_bucket(self) -> s3.Bucket:
        return self.buckets["bucket-media"]

    def _audit_key_policy(self, key: kms.Key) -> None:
        """CloudTrail encrypts its files, CloudWatch Logs its log groups, and CloudWatch alarms and Budgets publish
        to the encrypted topics with this key."""
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudTrailEncrypt", actions=["kms:GenerateDataKey", "kms:DescribeKey"], resources=["*"],
            principals=[iam.ServicePrincipal("cloudtrail.amazonaws.com")],
            conditions={"StringLike": {
                "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:aws:cloudtrail:*:{self.account}:trail/*"}}))
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="LogsEncrypt",
            actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                     "kms:DescribeKey"],
            resources=["*"], principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
            conditions={"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{self.region}:{self.account}:log-group:*"}}))
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="AlarmsAndBudgetsPublish", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"],
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                        iam.ServicePrincipal("budgets.amazonaws.com")],
            conditions={"StringEquals": {"aws:SourceAccount": self.account}}))


class AuthStack(_Base):
    stack_name_part = "auth"

    def __init__(self, scope: Construct, d: Deployment) -> None:
        super().__init__(scope, d)
        (c,) = self.components("user_pool")
        self.user_pool = cognito.UserPool(
            self, "UserPool", user_pool_name=f"{d.config.name}-users", self_sign_up_enabled=True,
            sign_in_aliases=cognito.SignInAliases(email=True), auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(min_length=12, require_digits=True, require_lowercase=True,
                                                   require_uppercase=True, require_symbols=False),
            mfa=cognito.Mfa.OPTIONAL, mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY, deletion_protection=True,
            removal_policy=cdk.RemovalPolicy.RETAIN)
        self.client = self.user_pool.add_client(
            "ApiClient", generate_secret=False, auth_flows=cognito.AuthFlow(user_srp=True),
            prevent_user_existence_errors=True, access_token_validity=cdk.Duration.hours(1),
            id_token_validity=cdk.Duration.hours(1), refresh_token_validity=cdk.Duration.days(30))
        self.built[c.id] = self.user_pool
        self.issuer = f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool.user_pool_id}"
        self.output("UserPoolId", self.user_pool.user_pool_id, "Cognito user pool")
        self.output("UserPoolClientId", self.client.user_pool_client_id, "App client: the OIDC audience")
        self.output("OidcIssuer", self.issuer, "oidc.issuer")

    def oidc_environment(self) -> dict[str, str]:
        """The API's OIDC settings (`REELFORGE_OIDC__...`) for this user pool."""
        env = self.d.oidc_env
        return {
            env["issuer"]: self.issuer,
            env["jwks_url"]: f"{self.issuer}/.well-known/jwks.json",
            env["audiences"]: cdk.Fn.join("", ['["', self.client.user_pool_client_id, '"]']),
            env["token_use"]: json.dumps(["id", "access"]),
        }


class ComputeStack(_Base):
    stack_name_part = "compute"

    def __init__(self, scope: Construct, d: Deployment, network: NetworkStack, data: DataStack,
                 auth: AuthStack) -> None:
        super().__init__(scope, d)
        cfg = d.config
        vpc = network.vpc
        media = data.buckets["bucket-media"]
        media_key = data.keys[d.component("bucket-media").props["key"]]
        audit_key = data.keys["key-audit"]
        instance_secret = data.secrets["secret-app"]

        self.repositories: dict[str, ecr.Repository] = {}
        for c in self.components("image_repository"):
            repo = ecr.Repository(
                self, _title(c.id), repository_name=f"{cfg.name}/{c.props['dockerfile']}", image_scan_on_push=True,
                image_tag_mutability=ecr.TagMutability.IMMUTABLE, encryption=ecr.RepositoryEncryption.KMS,
                lifecycle_rules=[ecr.LifecycleRule(max_image_count=30)], removal_policy=cdk.RemovalPolicy.RETAIN)
            self.repositories[c.id] = repo
            self.built[c.id] = repo
            self.output(f"{_title(c.id)}Uri", repo.repository_uri, c.label)

        self.log_group = logs.LogGroup(self, "Logs", encryption_key=audit_key,
                                       retention=RETENTION[cfg.log_retention_days],
                                       removal_policy=cdk.RemovalPolicy.RETAIN)

        common_env = {
            "REELFORGE_LOG_JSON": "true",
            "REELFORGE_STORAGE__BACKEND": "s3",
            "REELFORGE_STORAGE__S3_BUCKET": media.bucket_name,
            "REELFORGE_STORAGE__S3_REGION": self.region,
            "REELFORGE_DEPLOY_DATABASE_SECRET_ARN": data.db_secret.secret_arn,
            "REELFORGE_DEPLOY_INSTANCE_SECRET_ARN": instance_secret.secret_arn,
            "REELFORGE_DEPLOY_REGION": self.region,
            # Every object written with SSE-KMS under the data key (the bucket's default too), and the queue and
            # alarm figures published to CloudWatch, in the namespace the scaling policies and alarms read.
            "REELFORGE_STORAGE__S3_SSE": "aws:kms",
            "REELFORGE_STORAGE__S3_KMS_KEY_ID": media_key.key_arn,
            "REELFORGE_METRICS__CLOUDWATCH__ENABLED": "true",
            "REELFORGE_METRICS__CLOUDWATCH__REGION": self.region,
        }

        def platform_policy(role: iam.Role) -> None:
            """What every platform process calls: its objects, its key, its secrets, its metrics."""
            role.add_to_policy(iam.PolicyStatement(sid="MediaObjects", actions=list(S3_OBJECT_ACTIONS),
                                                   resources=[media.arn_for_objects("*")]))
            role.add_to_policy(iam.PolicyStatement(sid="MediaBucket", actions=list(S3_BUCKET_ACTIONS),
                                                   resources=[media.bucket_arn]))
            role.add_to_policy(iam.PolicyStatement(sid="DataKey", actions=list(KMS_DATA_ACTIONS),
                                                   resources=[media_key.key_arn]))
            role.add_to_policy(iam.PolicyStatement(
                sid="Secrets", actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                resources=[data.db_secret.secret_arn, instance_secret.secret_arn]))
            # PutMetricData has no resource-level permission; the condition keeps it to the platform's namespace.
            role.add_to_policy(iam.PolicyStatement(
                sid="Metrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": d.metric_namespace}}))

        # --- API on Fargate behind an ALB with WAF -----------------------------------------------------------
        self.cluster = ecs.Cluster(self, "Cluster", vpc=vpc,
                                   container_insights_v2=ecs.ContainerInsights.ENABLED)
        (api_c,) = self.components("api_service")
        task_role = iam.Role(self, "ApiTaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                             description="The API's process: objects, key, secrets, metrics")
        platform_policy(task_role)
        execution_role = iam.Role(self, "ApiExecutionRole",
                                  assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"))
        task = ecs.FargateTaskDefinition(
            self, "ApiTask", cpu=api_c.props["cpu"], memory_limit_mib=api_c.props["memory_mb"], task_role=task_role,
            execution_role=execution_role,
            runtime_platform=ecs.RuntimePlatform(cpu_architecture=ecs.CpuArchitecture.X86_64,
                                                 operating_system_family=ecs.OperatingSystemFamily.LINUX))
        api_env = {**common_env, "REELFORGE_HOST": "0.0.0.0", "REELFORGE_PORT": str(api_c.props["port"]),
                   "REELFORGE_CALLS__CONNECT_TIMEOUT_S": "1.0", **auth.oidc_environment()}
        container = task.add_container(
            "api", image=ecs.ContainerImage.from_ecr_repository(self.repositories[api_c.props["repository"]],
                                                                cfg.image_tag),
            environment=api_env, port_mappings=[ecs.PortMapping(container_port=api_c.props["port"])],
            logging=ecs.LogDriver.aws_logs(stream_prefix="api", log_group=self.log_group),
            health_check=ecs.HealthCheck(command=["CMD", "python", "/app/deploy/healthcheck.py", "api"],
                                         interval=cdk.Duration.seconds(30), timeout=cdk.Duration.seconds(5),
                                         retries=3, start_period=cdk.Duration.seconds(60)),
            readonly_root_filesystem=False, user="10001")
        del container
        self.api_security_group = ec2.SecurityGroup(self, "ApiSecurityGroup", vpc=vpc,
                                                    description="API tasks: from the load balancer")
        self.api_service = ecs.FargateService(
            self, "ApiService", cluster=self.cluster, task_definition=task, desired_count=api_c.props["min_tasks"],
            min_healthy_percent=100, max_healthy_percent=200, security_groups=[self.api_security_group],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True), enable_execute_command=False)
        scaling = self.api_service.auto_scale_task_count(min_capacity=api_c.props["min_tasks"],
                                                         max_capacity=api_c.props["max_tasks"])
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=60)
        self.built[api_c.id] = self.api_service

        (alb_c,) = self.components("load_balancer")
        alb_sg = ec2.SecurityGroup(self, "AlbSecurityGroup", vpc=vpc, description="Load balancer: HTTP(S) in")
        alb_sg.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        alb_sg.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(80), "HTTP, redirected to HTTPS when it is on")
        self.alb = elbv2.ApplicationLoadBalancer(self, "Alb", vpc=vpc, internet_facing=True, security_group=alb_sg,
                                                 drop_invalid_header_fields=True,
                                                 vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC))
        self.api_security_group.add_ingress_rule(alb_sg, ec2.Port.tcp(api_c.props["port"]), "from the ALB")
        target = elbv2.ApplicationTargetGroup(
            self, "ApiTargets", vpc=vpc, port=api_c.props["port"], protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.api_service], deregistration_delay=cdk.Duration.seconds(30),
            health_check=elbv2.HealthCheck(path=api_c.props["health_path"], healthy_http_codes="200",
                                           interval=cdk.Duration.seconds(15)))
        if cfg.certificate_arn:
            self.alb.add_listener("Https", port=443, protocol=elbv2.ApplicationProtocol.HTTPS,
                                  certificates=[elbv2.ListenerCertificate.from_arn(cfg.certificate_arn)],
                                  ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS, default_target_groups=[target])
            self.alb.add_listener("Http", port=80, default_action=elbv2.ListenerAction.redirect(
                protocol="HTTPS", port="443", permanent=True))
        else:
            self.alb.add_listener("Http", port=80, default_target_groups=[target])
        self.built[alb_c.id] = self.alb
        scheme = "https" if cfg.certificate_arn else "http"
        self.output("ApiUrl", f"{scheme}://{self.alb.load_balancer_dns_name}", "The API and console")

        for c in self.components("web_acl"):
            self.built[c.id] = self._web_acl(c)

        # --- workers: EC2 Auto Scaling groups, Spot and On-Demand, scaled on the queue ---------------------------
        self.worker_groups: dict[str, autoscaling.AutoScalingGroup] = {}
        for c in self.components("worker_group"):
            group = self._worker_group(c, vpc, common_env, platform_policy)
            self.worker_groups[c.id] = group
            self.built[c.id] = group
            self._database_ingress(data, group.connections.security_groups[0], c.id)
            # The API dials the workers' call servers (interactive calls).
            group.connections.allow_from(self.api_security_group, ec2.Port.tcp(CALL_PORT), "interactive calls")
        self._database_ingress(data, self.api_security_group, "api")

    def _database_ingress(self, data: DataStack, source: ec2.ISecurityGroup, name: str) -> None:
        # Declared here, not on the database's group: the data stack must not depend on this one.
        ec2.CfnSecurityGroupIngress(self, f"DatabaseFrom{_title(name)}",
                                    group_id=data.db_security_group.security_group_id,
                                    source_security_group_id=source.security_group_id, ip_protocol="tcp",
                                    from_port=5432, to_port=5432, description=f"PostgreSQL from {name}")

    def _web_acl(self, c: Component) -> wafv2.CfnWebACL:
        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(cloud_watch_metrics_enabled=True, metric_name=name,
                                                            sampled_requests_enabled=True)

        rules = [wafv2.CfnWebACL.RuleProperty(
            name="rate-limit-per-ip", priority=0, action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=c.props["rate_limit"], aggregate_key_type="IP", evaluation_window_sec=300)),
            visibility_config=visibility("rate-limit-per-ip"))]
        for i, group in enumerate(c.props["managed_rules"], start=1):
            rules.append(wafv2.CfnWebACL.RuleProperty(
                name=group, priority=i, override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=group)),
                visibility_config=visibility(group)))
        acl = wafv2.CfnWebACL(self, "WebAcl", scope="REGIONAL",
                              default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}), rules=rules,
                              visibility_config=visibility(f"{self.d.config.name}-api"))
        wafv2.CfnWebACLAssociation(self, "WebAclAlb", resource_arn=self.alb.load_balancer_arn,
                                   web_acl_arn=acl.attr_arn)
        return acl

    def _worker_group(self, c: Component, vpc: ec2.IVpc, common_env: dict[str, str],
                      platform_policy: Any) -> autoscaling.AutoScalingGroup:
        cfg = self.d.config
        rc = c.props["resource_class"]
        name = _title(c.id)
        repo = self.repositories[c.props["repository"]]
        role = iam.Role(self, f"{name}Role", assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
                        description=f"{rc.upper()} workers: objects, key, secrets, metrics, their image and logs")
        platform_policy(role)
        # ECR's token call has no resource-level permission; pulls are scoped to this group's repository.
        role.add_to_policy(iam.PolicyStatement(sid="EcrToken", actions=["ecr:GetAuthorizationToken"],
                                               resources=["*"]))
        role.add_to_policy(iam.PolicyStatement(
            sid="EcrPull", actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                    "ecr:BatchCheckLayerAvailability"], resources=[repo.repository_arn]))
        role.add_to_policy(iam.PolicyStatement(sid="Logs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                               resources=[f"{self.log_group.log_group_arn}:log-stream:*"]))
        # Named up front, so that the role can name the group without depending on it.
        group_name = f"{cfg.name}-workers-{rc}"
        role.add_to_policy(iam.PolicyStatement(
            sid="ReportHealth", actions=["autoscaling:SetInstanceHealth"],
            resources=[f"arn:{self.partition}:autoscaling:{self.region}:{self.account}:autoScalingGroup:*:"
                       f"autoScalingGroupName/{group_name}"]))
        sg = ec2.SecurityGroup(self, f"{name}SecurityGroup", vpc=vpc, description=f"{rc.upper()} workers")
        gpu = rc == "gpu"
        image = ecs.EcsOptimizedImage.amazon_linux2(ecs.AmiHardwareType.GPU) if gpu else \
            ecs.EcsOptimizedImage.amazon_linux2023()
        env = {**common_env, "REELFORGE_CALLS__HOST": "0.0.0.0", "REELFORGE_CALLS__PORT": str(CALL_PORT)}
        kinds = " ".join(f"--kind {k}" for k in c.props["kinds"])
        env_flags = " ".join(f"-e {k}={_shell_quote(v)}" for k, v in sorted(env.items()))
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            "set -euo pipefail",
            # The ECS agent of the optimized AMI is not used: this instance runs one worker container itself.
            "systemctl disable --now ecs || true",
            "TOKEN=$(curl -sX PUT http://169.254.169.254/latest/api/token "
            '-H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
            'PRIVATE_IP=$(curl -s -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/local-ipv4)',
            f"aws ecr get-login-password --region {self.region} | docker login --username AWS --password-stdin "
            f"{self.account}.dkr.ecr.{self.region}.{self.url_suffix}",
            f"docker run -d --name reelforge-worker --restart unless-stopped --network host --stop-timeout 120 "
            f"{'--gpus all ' if gpu else ''}--log-driver awslogs --log-opt awslogs-region={self.region} "
            f"--log-opt awslogs-group={self.log_group.log_group_name} --log-opt awslogs-stream=worker-{rc}-$PRIVATE_IP "
            f"{env_flags} -e REELFORGE_CALLS__PUBLIC_HOST=$PRIVATE_IP "
            f"{repo.repository_uri}:{cfg.image_tag} worker --concurrency {c.props['concurrency']} {kinds}",
            # The image's HEALTHCHECK marks a worker that lost its registration unhealthy; docker alone would only
            # report it. This loop tells the group, which replaces the instance.
            'INSTANCE_ID=$(curl -s -H "X-aws-ec2-metadata-token: $TOKEN" '
            "http://169.254.169.254/latest/meta-data/instance-id)",
            "cat > /usr/local/bin/reelforge-health <<EOF\n#!/bin/bash\nwhile sleep 60; do\n"
            "  if [ \"\\$(docker inspect -f '{{.State.Health.Status}}' reelforge-worker 2>/dev/null)\" = unhealthy ]; "
            f"then\n    aws autoscaling set-instance-health --region {self.region} --instance-id $INSTANCE_ID "
            "--health-status Unhealthy\n  fi\ndone\nEOF",
            "chmod 755 /usr/local/bin/reelforge-health",
            "nohup /usr/local/bin/reelforge-health >/var/log/reelforge-health.log 2>&1 &",
        )
        template = ec2.LaunchTemplate(
            self, f"{name}LaunchTemplate", machine_image=image, role=role, security_group=sg, user_data=user_data,
            require_imdsv2=True, instance_type=ec2.InstanceType(c.props["instance_types"][0]),
            block_devices=[ec2.BlockDevice(device_name="/dev/xvda", volume=ec2.BlockDeviceVolume.ebs(
                200 if gpu else 100, encrypted=True, volume_type=ec2.EbsDeviceVolumeType.GP3))])
        group = autoscaling.AutoScalingGroup(
            self, name, auto_scaling_group_name=group_name, vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            min_capacity=0, max_capacity=c.props["max"], capacity_rebalance=True,
            mixed_instances_policy=autoscaling.MixedInstancesPolicy(
                launch_template=template,
                launch_template_overrides=[autoscaling.LaunchTemplateOverrides(instance_type=ec2.InstanceType(t))
                                           for t in c.props["instance_types"]],
                instances_distribution=autoscaling.InstancesDistribution(
                    on_demand_base_capacity=0,
                    on_demand_percentage_above_base_capacity=100 - c.props["spot_percent"],
                    spot_allocation_strategy=autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED)),
            health_checks=autoscaling.HealthChecks.ec2(grace_period=cdk.Duration.minutes(10)),
            default_instance_warmup=cdk.Duration.minutes(5))
        self._scaling(group, c)
        self.output(f"{name}Name", group.auto_scaling_group_name, c.label)
        return group

    def _scaling(self, group: autoscaling.AutoScalingGroup, c: Component) -> None:
        """Out while jobs of this resource class wait (none of the group's slots has claimed them), more for a deeper
        queue; in to zero once the backlog (waiting + running) has been empty for `idle_minutes`. Running jobs count
        in the backlog, so the group never scales in under a job; they do not count for scaling out, so one long job
        does not keep adding instances."""
        m = c.props["scale_metric"]
        depth, running = m["metrics"]

        def metric(name: str) -> cw.Metric:
            return cw.Metric(namespace=m["namespace"], metric_name=name, dimensions_map=dict(m["dimension"]),
                             statistic="Maximum", period=cdk.Duration.minutes(1))

        waiting = cw.MathExpression(expression="FILL(depth, 0)", using_metrics={"depth": metric(depth)},
                                    label="waiting", period=cdk.Duration.minutes(1))
        backlog = cw.MathExpression(expression="FILL(depth, 0) + FILL(running, 0)",
                                    using_metrics={"depth": metric(depth), "running": metric(running)},
                                    label="backlog", period=cdk.Duration.minutes(1))
        group.scale_on_metric("ScaleOutOnQueue", metric=waiting,
                              adjustment_type=autoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                              scaling_steps=[autoscaling.ScalingInterval(upper=1, change=0),
                                             autoscaling.ScalingInterval(lower=1, change=1),
                                             autoscaling.ScalingInterval(lower=10, change=2),
                                             autoscaling.ScalingInterval(lower=50, change=4)],
                              evaluation_periods=1, estimated_instance_warmup=cdk.Duration.minutes(5))
        group.scale_on_metric("ScaleInWhenIdle", metric=backlog,
                              adjustment_type=autoscaling.AdjustmentType.PERCENT_CHANGE_IN_CAPACITY,
                              scaling_steps=[autoscaling.ScalingInterval(upper=0, change=-100),
                                             autoscaling.ScalingInterval(lower=1, change=0)],
                              evaluation_periods=c.props["idle_minutes"], datapoints_to_alarm=c.props["idle_minutes"])


def _shell_quote(value: str) -> str:
    # Tokens (ARNs, names from other stacks) are resolved by CloudFormation inside the user data; quote them whole.
    return f"'{value}'"


class EdgeStack(_Base):
    stack_name_part = "edge"

    def __init__(self, scope: Construct, d: Deployment, data: DataStack) -> None:
        super().__init__(scope, d)
        (c,) = self.components("cdn")
        media = data.buckets[c.props["origin"]]
        # Imported by name: the bucket policy (in the data stack) already lets this account's distributions read,
        # and an imported bucket keeps CDK from editing that policy from here (which would make a cycle).
        bucket = s3.Bucket.from_bucket_attributes(self, "MediaOrigin", bucket_name=media.bucket_name,
                                                  bucket_arn=media.bucket_arn)
        if not d.config.cdn_public_key_pem:
            raise ValueError("edge: set the cdn_public_key_pem (or cdn_public_key_file) context to the public key "
                             "whose private half signs CloudFront URLs for outputs (docs/deploy-aws.md)")
        key = cloudfront.PublicKey(self, "SigningKey", encoded_key=d.config.cdn_public_key_pem,
                                   comment="signs output URLs")
        group = cloudfront.KeyGroup(self, "SigningKeys", items=[key])
        self.distribution = cloudfront.Distribution(
            self, "Outputs", comment=c.label,
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED, trusted_key_groups=[group]),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100, http_version=cloudfront.HttpVersion.HTTP2_AND_3)
        cdk.Annotations.of(self).acknowledge_warning(
            "@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac",
            "the data stack's bucket and key policies already let this account's distributions read")
        self.built[c.id] = self.distribution
        self.output("OutputsDomain", self.distribution.distribution_domain_name, c.label)
        self.output("OutputsKeyPairId", key.public_key_id, "CloudFront key id for signing output URLs")


class ObservabilityStack(_Base):
    stack_name_part = "observability"

    def __init__(self, scope: Construct, d: Deployment, data: DataStack, compute: ComputeStack) -> None:
        super().__init__(scope, d)
        self.topics: dict[str, sns.Topic] = {}
        for c in self.components("topic"):
            topic = sns.Topic(self, _title(c.id), display_name=c.label, master_key=data.keys[c.props["key"]],
                              enforce_ssl=True)
            if d.config.alarm_email:
                topic.add_subscription(subs.EmailSubscription(d.config.alarm_email))
            self.topics[c.id] = topic
            self.built[c.id] = topic
            self.output(f"{_title(c.id)}Arn", topic.topic_arn, c.label)
        ns = d.metric_namespace
        self.output("MetricNamespace", ns, "CloudWatch namespace of the queue metrics and alarm rule values")
        self.alarms: dict[str, cw.Alarm] = {}
        for c in self.components("alarm"):
            p = c.props
            alarm = cw.Alarm(
                self, _title(c.id), alarm_name=f"{d.config.name}-{p['rule']}", alarm_description=p["description"],
                metric=cw.Metric(namespace=p["namespace"], metric_name=p["metric"],
                                 dimensions_map={p["dimension"]: p["rule"]}, statistic="Maximum",
                                 period=cdk.Duration.minutes(1)),
                threshold=p["threshold"], evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            action = cw_actions.SnsAction(self.topics[p["topic"]])
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[c.id] = alarm
            self.built[c.id] = alarm
        for c in self.components("dashboard"):
            self.built[c.id] = self._dashboard(c, ns, compute)
        for c in self.components("trail"):
            bucket = data.buckets[c.props["bucket"]]
            self.built[c.id] = cloudtrail.Trail(
                self, "Trail", bucket=bucket, encryption_key=data.keys[c.props["key"]], is_multi_region_trail=True,
                include_global_service_events=True, enable_file_validation=True)
        for c in self.components("budget"):
            topic = self.topics[c.props["topic"]]
            topic.add_to_resource_policy(iam.PolicyStatement(
                sid="BudgetsPublish", actions=["sns:Publish"], resources=[topic.topic_arn],
                principals=[iam.ServicePrincipal("budgets.amazonaws.com")],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}}))
            self.built[c.id] = budgets.CfnBudget(
                self, "Budget", budget=budgets.CfnBudget.BudgetDataProperty(
                    budget_type="COST", time_unit="MONTHLY", budget_name=f"{d.config.name}-monthly",
                    budget_limit=budgets.CfnBudget.SpendProperty(amount=c.props["limit_usd"], unit="USD")),
                notifications_with_subscribers=[
                    budgets.CfnBudget.NotificationWithSubscribersProperty(
                        notification=budgets.CfnBudget.NotificationProperty(
                            comparison_operator="GREATER_THAN", notification_type=kind, threshold=pct,
                            threshold_type="PERCENTAGE"),
                        subscribers=[budgets.CfnBudget.SubscriberProperty(subscription_type="SNS",
                                                                          address=topic.topic_arn)])
                    for pct, kind in c.props["thresholds"]])

    def _dashboard(self, c: Component, ns: str, compute: ComputeStack) -> cw.Dashboard:
        m = self.d.metric_names
        classes = [g.props["resource_class"] for g in self.d.of_kind("worker_group")]

        def q(name: str, dim: str, value: str, stat: str = "Maximum") -> cw.Metric:
            return cw.Metric(namespace=ns, metric_name=name, dimensions_map={dim: value}, statistic=stat,
                             period=cdk.Duration.minutes(1), label=f"{value}")

        cost = cw.Metric(namespace="AWS/Billing", metric_name="EstimatedCharges", dimensions_map={"Currency": "USD"},
                         statistic="Maximum", period=cdk.Duration.hours(6), region="us-east-1",
                         label="estimated charges (USD, month to date)")
        dash = cw.Dashboard(self, "Dashboard", dashboard_name=f"{self.d.config.name}-overview",
                            default_interval=cdk.Duration.hours(6))
        dash.add_widgets(
            cw.GraphWidget(title="Cost: estimated charges (USD)", left=[cost], width=8),
            cw.GraphWidget(title="Queue: jobs waiting, by resource class",
                           left=[q(m["queue_depth"], m["dim_resource"], rc) for rc in classes], width=8),
            cw.GraphWidget(title="Queue: oldest wait (s), by resource class",
                           left=[q(m["queue_age"], m["dim_resource"], rc) for rc in classes], width=8))
        dash.add_widgets(
            cw.GraphWidget(title="Jobs: running, by resource class",
                           left=[q(m["running"], m["dim_resource"], rc) for rc in classes], width=8),
            cw.GraphWidget(title="Jobs: waiting, by kind",
                           left=[q(m["queue_depth"], m["dim_kind"], k.kind) for k in self.d.job_kinds()], width=8),
            cw.GraphWidget(title="Workers: instances in service",
                           left=[cw.Metric(namespace="AWS/AutoScaling", metric_name="GroupInServiceInstances",
                                           dimensions_map={"AutoScalingGroupName": g.auto_scaling_group_name},
                                           statistic="Maximum", period=cdk.Duration.minutes(1), label=gid)
                                 for gid, g in compute.worker_groups.items()], width=8))
        dash.add_widgets(
            cw.GraphWidget(title="Errors: API 5xx", left=[
                compute.alb.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, statistic="Sum"),
                compute.alb.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, statistic="Sum")], width=8),
            cw.GraphWidget(title="Errors: the platform's alarm rules",
                           left=[q(m["alarm_value"], m["dim_rule"], a.props["rule"]) for a in self.d.of_kind("alarm")],
                           width=8),
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=8))
        return dash
