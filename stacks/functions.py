"""The Lambda functions: arm64, Python 3.12, code from ``lambdas/``, dependencies from the layers
``layers/`` builds, each with its own role and log group; the functions that use the feature
store share one security group, the loader (which does not) has its own.

Every function's settings reach it as environment variables that its settings object parses
(tests/infra checks each name against what the settings read); secrets are passed only as ARNs
and read at cold start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from layers.recipes import FUNCTION_LAYERS, layer_path
from stacks.cache import FeatureCache
from stacks.common import log_retention
from stacks.config import EnvConfig
from stacks.network import Network

__all__ = [
    "ENI_STATEMENT",
    "LAMBDAS_DIR",
    "LOADER_TIMEOUT_S",
    "POLLER_TIMEOUT_S",
    "FunctionSpec",
    "Functions",
    "function_specs",
]

LAMBDAS_DIR: Final = Path(__file__).resolve().parent.parent / "lambdas"
POLLER_TIMEOUT_S: Final = 60
"""The poller's timeout: one schedule period; it stops polling POLLER_STOP_MARGIN_MS before."""
LOADER_TIMEOUT_S: Final = 300
"""The loader's timeout: a day of aggregated trades per object batch is well within it."""


# What Lambda needs to attach a function to the VPC (AWSLambdaVPCAccessExecutionRole's actions,
# inline). EC2 offers no resource-level permissions for them: the resource must be "*".
ENI_STATEMENT: Final = iam.PolicyStatement(
    sid="VpcNetworkInterfaces",
    actions=[
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ],
    resources=["*"],
)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What differs between the functions besides their wiring."""

    name: str
    description: str
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int | None = None
    feature_store: bool = True
    """Reads or writes Redis: the shared security group, the cache's credentials and the REDIS_*
    variables. Otherwise the function gets its own egress-only group (HTTPS) and none of them."""


def function_specs(config: EnvConfig) -> dict[str, FunctionSpec]:
    """The six functions, sized by the environment's row where it sizes them."""
    return {
        "aggregator": FunctionSpec(
            "aggregator",
            "Kinesis market events -> the twelve features in Redis",
            config.aggregator_memory_mb,
            60,
        ),
        "inference": FunctionSpec(
            "inference",
            "Every minute: a prediction every interval until the lease hands over",
            config.inference_memory_mb,
            config.inference_timeout_s,
            reserved_concurrency=2,  # the one running and the one taking over the lease
        ),
        "api": FunctionSpec("api", "HTTP API: GET /health, GET /prediction/latest", 256, 10),
        "websocket": FunctionSpec(
            "websocket", "WebSocket API: $connect, $disconnect, $default", 256, 10
        ),
        "poller": FunctionSpec(
            "poller",
            "Every minute: Binance REST every few seconds -> fallback features in Redis",
            config.poller_memory_mb,
            POLLER_TIMEOUT_S,
            reserved_concurrency=2,  # the one running and the one starting
        ),
        "loader": FunctionSpec(
            "loader",
            "Raw market history (S3 Avro, via SQS) -> PostgreSQL",
            config.loader_memory_mb,
            LOADER_TIMEOUT_S,
            feature_store=False,
        ),
    }


class Functions(Construct):
    """The four functions, built alike; :attr:`functions` maps name to function.

    Attributes
    ----------
    functions
        ``aggregator``, ``inference``, ``api``, ``websocket``, ``poller``, ``loader``.
    security_group
        The feature-store functions' shared egress-only group: HTTPS anywhere (Binance through
        NAT, AWS APIs) and the cache's ports; nothing may connect to it.
    own_security_groups
        The groups of the functions that do not use the feature store (``loader``), by name:
        HTTPS out only until the stack adds what the function reaches (the database).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvConfig,
        network: Network,
        cache: FeatureCache,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config, self._network, self._cache = config, network, cache
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="btcpred functions: HTTPS out and the feature store, nothing in",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "Binance REST and AWS APIs over HTTPS"
        )
        for port in (6379, 6380):
            self.security_group.add_egress_rule(
                cache.security_group, ec2.Port.tcp(port), "the feature store"
            )
        cache.allow_from(self.security_group)
        self._layers = self._build_layers()
        specs = function_specs(config)
        self.own_security_groups: dict[str, ec2.SecurityGroup] = {
            name: self._own_security_group(name) for name, s in specs.items() if not s.feature_store
        }
        self.functions: dict[str, lambda_.Function] = {
            name: self._function(spec) for name, spec in specs.items()
        }
        for name, fn in self.functions.items():
            if specs[name].feature_store:
                cache.credentials.grant_read(fn)

    def _own_security_group(self, name: str) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            f"{name}-sg",
            vpc=self._network.vpc,
            description=f"btcpred {name}: HTTPS out (S3, Secrets Manager), nothing in",
            allow_all_outbound=False,
        )
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs over HTTPS")
        return group

    def _build_layers(self) -> dict[str, lambda_.LayerVersion]:
        names = sorted({n for layers in FUNCTION_LAYERS.values() for n in layers})
        return {
            name: lambda_.LayerVersion(
                self,
                f"Layer-{name}",
                code=lambda_.Code.from_asset(str(layer_path(name))),
                compatible_architectures=[lambda_.Architecture.ARM_64],
                compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
                description=f"btcpred {name} layer (layers/recipes.py)",
            )
            for name in names
        }

    def _function(self, spec: FunctionSpec) -> lambda_.Function:
        config = self._config
        name = f"{config.prefix}-{spec.name}"
        log_group = logs.LogGroup(
            self,
            f"{spec.name}-logs",
            log_group_name=f"/aws/lambda/{name}",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{spec.name}-role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{name}: written for what the function calls",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        role.add_to_policy(ENI_STATEMENT)
        return lambda_.Function(
            self,
            spec.name,
            function_name=name,
            description=spec.description,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(
                str(LAMBDAS_DIR / spec.name), exclude=["__pycache__", "*.pyc"]
            ),
            layers=[self._layers[n] for n in FUNCTION_LAYERS[spec.name]],
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            role=role,
            log_group=log_group,
            vpc=self._network.vpc,
            vpc_subnets=self._network.app_subnets,
            security_groups=[self.own_security_groups.get(spec.name, self.security_group)],
            environment=self.redis_environment() if spec.feature_store else self.base_environment(),
            reserved_concurrent_executions=spec.reserved_concurrency,
        )

    def base_environment(self) -> dict[str, str]:
        """What every function gets."""
        return {"POWERTOOLS_LOG_LEVEL": self._config.log_level}

    def redis_environment(self) -> dict[str, str]:
        """What every feature-store function needs to reach the store (no secret values)."""
        return {
            "SYMBOLS": ",".join(self._config.symbols),
            "REDIS_HOST": self._cache.host,
            "REDIS_PORT": self._cache.port,
            "REDIS_TLS": "true",
            "REDIS_CLUSTER": "true",
            "REDIS_AUTH_SECRET_ARN": self._cache.credentials.secret_arn,
            **self.base_environment(),
        }

    def allow_posting(self, fn: lambda_.Function, api_id: str, stage: str) -> None:
        """Let ``fn`` POST to ``@connections`` of one WebSocket stage, and nothing else."""
        stack = Stack.of(self)
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["execute-api:ManageConnections"],
                resources=[
                    stack.format_arn(
                        service="execute-api",
                        resource=api_id,
                        resource_name=f"{stage}/POST/@connections/*",
                    )
                ],
            )
        )
