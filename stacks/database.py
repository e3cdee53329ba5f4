"""The history database: RDS PostgreSQL, encrypted, private, TLS enforced, a generated secret
with rotation, backups per environment.

The history loader (issue 14) writes to it; it is let in through :meth:`allow_from`.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from stacks.common import data_removal_policy, log_retention
from stacks.config import EnvConfig
from stacks.network import Network

__all__ = ["DATABASE_NAME", "HistoryDatabase"]

_LOG_EXPORTS = ("postgresql", "upgrade")
DATABASE_NAME = "btcpred"
"""The database the instance creates (the loader's ``DATABASE_NAME``)."""
ENGINE = rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_9)


class HistoryDatabase(Construct):
    """Attributes ``instance`` and ``secret`` (``rds.force_ssl`` is on: ``sslmode=require``)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvConfig, network: Network
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="RDS PostgreSQL: only the history functions may connect",
            allow_all_outbound=False,
        )
        # The exported logs' groups, made here with a retention (CDK's own retention setting
        # would add a custom-resource function).
        identifier = f"{config.prefix}-history"
        log_groups = [
            logs.LogGroup(
                self,
                f"{name}-logs",
                log_group_name=f"/aws/rds/instance/{identifier}/{name}",
                retention=log_retention(config.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            )
            for name in _LOG_EXPORTS
        ]
        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=ENGINE,
            description="TLS required; slow statements logged",
            parameters={"rds.force_ssl": "1", "log_min_duration_statement": "1000"},
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=ENGINE,
            instance_type=ec2.InstanceType(config.db_instance_class),
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            security_groups=[self.security_group],
            credentials=rds.Credentials.from_generated_secret(
                "btcpred", secret_name=f"{config.prefix}/postgres-admin"
            ),
            database_name=DATABASE_NAME,
            parameter_group=parameters,
            storage_encrypted=True,
            allocated_storage=config.db_allocated_storage_gb,
            max_allocated_storage=config.db_max_allocated_storage_gb,
            storage_type=rds.StorageType.GP3,
            multi_az=config.db_multi_az,
            publicly_accessible=False,
            backup_retention=Duration.days(config.db_backup_retention_days),
            deletion_protection=config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT if config.retain_data else RemovalPolicy.DESTROY,
            iam_authentication=True,
            auto_minor_version_upgrade=True,
            instance_identifier=identifier,
            cloudwatch_logs_exports=list(_LOG_EXPORTS),
            copy_tags_to_snapshot=True,
        )
        self.instance.node.add_dependency(*log_groups)
        if self.instance.secret is None:  # from_generated_secret always makes one
            raise RuntimeError("the database instance has no generated secret")
        self.secret = self.instance.secret
        self.secret.apply_removal_policy(data_removal_policy(config))
        # Rotation runs in the app subnets: it needs Secrets Manager's public endpoint (NAT).
        self.instance.add_rotation_single_user(
            automatically_after=Duration.days(30),
            vpc_subnets=network.app_subnets,
        )

    def allow_from(self, peer: ec2.ISecurityGroup) -> None:
        """Let ``peer`` reach PostgreSQL: ingress on the database's group and, for a group
        without all outbound, the matching egress on ``peer`` (both on the instance's port)."""
        self.instance.connections.allow_default_port_from(peer, "btcpred history functions")
