"""The ingestor: one Fargate task (linux/arm64) that reads Binance's SBE market-data stream and
writes it to the Kinesis stream with PutRecords.

The container runs ``btcpred ingest`` (``ingestor/Dockerfile``, built from the repository root
by the CDK CLI at deploy time; synth only stages the few paths ``.dockerignore`` admits). Its
settings arrive as the environment variables of :func:`ingestor_environment`; the Binance API
key is passed as its secret's ARN and read by the process at start (GetSecretValue), so the
value never appears in the task definition. The service keeps exactly one task: a deployment
starts the new task before it stops the old one (min 100 %, max 200 %), and the circuit
breaker rolls a deployment back when its tasks do not become healthy. On SIGTERM the process
closes the socket and flushes within ``INGEST_FLUSH_DEADLINE_S``, well inside the container's
stop timeout, so ECS never has to SIGKILL a flush.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aws_cdk import Duration, IgnoreMode, RemovalPolicy, Size
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as sm
from aws_cdk.aws_ecr_assets import Platform
from constructs import Construct

from stacks.common import log_retention
from stacks.config import EnvConfig
from stacks.network import Network

__all__ = [
    "BINANCE_REST_URL",
    "BINANCE_STREAM_URL",
    "DOCKERFILE",
    "EGRESS_PORTS",
    "FLUSH_DEADLINE_S",
    "HEALTH_CHECK",
    "HEARTBEAT_PATH",
    "REPO_ROOT",
    "STOP_TIMEOUT_S",
    "Ingestor",
    "ingestor_environment",
]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
"""The image's build context (``.dockerignore`` there admits src/, pyproject.toml, README.md
and the requirements files)."""
DOCKERFILE: Final = "ingestor/Dockerfile"
BINANCE_STREAM_URL: Final = "wss://stream-sbe.binance.com:9443"
BINANCE_REST_URL: Final = "https://api.binance.com"
HEARTBEAT_PATH: Final = "/tmp/btcpred-ingest.heartbeat"  # noqa: S108 - the container's own /tmp
STOP_TIMEOUT_S: Final = 30
"""SIGTERM to SIGKILL (ECS's default, at most 120 s)."""
FLUSH_DEADLINE_S: Final = 20
"""What the process allows itself after SIGTERM: 10 s below the stop timeout for the socket
close, the last PutRecords and the exit."""
HEALTH_CHECK: Final = ("CMD", "btcpred", "ingest-health")
"""Exit 0 healthy, 1 unhealthy; reads the local heartbeat file, never calls Binance."""
EGRESS_PORTS: Final = {
    443: "Binance REST, Kinesis, Secrets Manager, CloudWatch Logs and ECR over HTTPS",
    9443: "the Binance SBE market-data WebSocket (wss)",
}

if not FLUSH_DEADLINE_S < STOP_TIMEOUT_S <= 120:
    raise RuntimeError("the flush deadline must end before the stop timeout (at most 120 s)")


def ingestor_environment(
    config: EnvConfig, *, stream_name: str, api_key_secret_arn: str
) -> dict[str, str]:
    """The container's environment: every name ``btcpred ingest`` reads, no secret value."""
    return {
        "ENVIRONMENT": config.name,
        "SYMBOLS": ",".join(config.symbols),
        "KINESIS_STREAM_NAME": stream_name,
        "BINANCE_API_KEY_SECRET_ARN": api_key_secret_arn,
        "BINANCE_STREAM_URL": BINANCE_STREAM_URL,
        "BINANCE_REST_URL": BINANCE_REST_URL,
        "LOG_LEVEL": config.log_level,
        "INGEST_FLUSH_DEADLINE_S": str(FLUSH_DEADLINE_S),
        "INGEST_HEARTBEAT_PATH": HEARTBEAT_PATH,
    }


class Ingestor(Construct):
    """The ECS cluster, the task definition and the one-task Fargate service.

    Attributes
    ----------
    cluster
        ``{prefix}``, with Container Insights (the running-task alarm reads its metrics).
    service
        ``{prefix}-ingestor`` in the app subnets, no public IP, its own egress-only group.
    task_definition
        One container, ``ingestor``; its execution role (CDK's) pulls the image and writes the
        log group.
    task_role
        PutRecords/PutRecord on the stream and GetSecretValue on the Binance key, nothing else.
    log_group
        The container's stdout/stderr (its logs and its EMF metrics).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvConfig,
        network: Network,
        stream: kinesis.IStream,
        api_key: sm.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=config.prefix,
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/ecs/{config.prefix}/ingestor",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.task_role = self._task_role(config, stream, api_key)
        self.task_definition = task = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=f"{config.prefix}-ingestor",
            cpu=config.ingestor_cpu,
            memory_limit_mib=config.ingestor_memory_mb,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            task_role=self.task_role,
        )
        task.add_container(
            "ingestor",
            container_name="ingestor",
            image=ecs.ContainerImage.from_asset(
                str(REPO_ROOT),
                file=DOCKERFILE,
                platform=Platform.LINUX_ARM64,
                ignore_mode=IgnoreMode.DOCKER,
            ),
            environment=ingestor_environment(
                config, stream_name=stream.stream_name, api_key_secret_arn=api_key.secret_arn
            ),
            essential=True,
            stop_timeout=Duration.seconds(STOP_TIMEOUT_S),
            health_check=ecs.HealthCheck(
                command=list(HEALTH_CHECK),
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(60),
            ),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="ingestor",
                log_group=self.log_group,
                # a slow CloudWatch Logs must not block the process's stdout (and its socket)
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=Size.mebibytes(25),
            ),
        )
        self.security_group = self._security_group(network)
        self.service = ecs.FargateService(
            self,
            "Service",
            service_name=f"{config.prefix}-ingestor",
            cluster=self.cluster,
            task_definition=task,
            desired_count=config.ingestor_desired_count,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            assign_public_ip=False,
            vpc_subnets=network.app_subnets,
            security_groups=[self.security_group],
            enable_execute_command=False,
            platform_version=ecs.FargatePlatformVersion.LATEST,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

    def _task_role(self, config: EnvConfig, stream: kinesis.IStream, key: sm.ISecret) -> iam.Role:
        role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.prefix}-ingestor: write the stream, read the Binance key",
        )
        # Not stream.grant_write: it adds ListShards and DescribeStreamSummary, which the
        # ingestor never calls. The stream is encrypted with the AWS-managed aws/kinesis key,
        # whose key policy lets any principal of the account use it through Kinesis, so there
        # is no key to grant kms:GenerateDataKey on.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteTheStream",
                actions=["kinesis:PutRecord", "kinesis:PutRecords"],
                resources=[stream.stream_arn],
            )
        )
        # Not key.grant_read: it adds DescribeSecret, which the ingestor never calls.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadTheBinanceKey",
                actions=["secretsmanager:GetSecretValue"],
                resources=[key.secret_arn],
            )
        )
        return role

    def _security_group(self, network: Network) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="btcpred ingestor: HTTPS and the Binance wss port out, nothing in",
            allow_all_outbound=False,
        )
        for port, why in EGRESS_PORTS.items():
            group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port), why)
        return group
