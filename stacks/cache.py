"""The feature store: ElastiCache Serverless (Valkey), TLS only, RBAC, in the isolated subnets.

Serverless rather than a replication group, in every environment (docs/decisions.md 53): the
working set is a few kilobytes per symbol, so the smallest node would sit ~99 % idle while its
hourly price is several times the serverless floor; serverless is Multi-AZ without sizing, and
always a Redis Cluster with TLS, which the code supports since the hardening issue. The
functions authenticate as one application user whose access string is derived from the key
schema (:func:`btcpred.keys.acl_access_string`); the mandatory ``default`` user is disabled.
"""

from __future__ import annotations

import json

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from btcpred.keys import RedisKeys, acl_access_string
from stacks.config import EnvConfig
from stacks.network import Network

__all__ = ["FeatureCache"]

PORT = 6379


class FeatureCache(Construct):
    """The serverless cache, its users and its credentials secret.

    Attributes
    ----------
    host, port
        The cache endpoint (tokens resolved at deploy time).
    credentials
        Secret ``{"username": ..., "password": ...}`` of the application user.
    security_group
        The cache's group; :meth:`allow_from` opens the port to a client's group.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvConfig, network: Network
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="ElastiCache Serverless - only the btcpred functions may connect",
            allow_all_outbound=False,
        )
        username = f"{config.prefix}-app"
        self.credentials = sm.Secret(
            self,
            "AppUserSecret",
            secret_name=f"{config.prefix}/redis-app-user",
            description="ElastiCache RBAC application user (username, password)",
            generate_secret_string=sm.SecretStringGenerator(
                secret_string_template=json.dumps({"username": username}),
                generate_string_key="password",
                exclude_punctuation=True,
                include_space=False,
                password_length=64,
            ),
        )
        # A Valkey user group holds only users that authenticate (no "no-password-required"),
        # and the user named "default" is what unauthenticated connections become: switched
        # off, with a random password nobody reads, it admits no one.
        self.default_secret = default_secret = sm.Secret(
            self,
            "DefaultUserSecret",
            secret_name=f"{config.prefix}/redis-default-user",
            description="Password of the disabled ElastiCache default user (never used)",
            generate_secret_string=sm.SecretStringGenerator(
                exclude_punctuation=True, include_space=False, password_length=64
            ),
        )
        default_user = elasticache.CfnUser(
            self,
            "DisabledDefaultUser",
            engine="valkey",
            user_id=f"{config.prefix}-default",
            user_name="default",
            access_string="off -@all",
            authentication_mode={
                "Type": "password",
                "Passwords": [default_secret.secret_value.unsafe_unwrap()],
            },
        )
        app_user = elasticache.CfnUser(
            self,
            "AppUser",
            engine="valkey",
            user_id=username,
            user_name=username,
            access_string=acl_access_string(RedisKeys()),
            authentication_mode={
                "Type": "password",
                "Passwords": [self.credentials.secret_value_from_json("password").unsafe_unwrap()],
            },
        )
        group = elasticache.CfnUserGroup(
            self,
            "Users",
            engine="valkey",
            user_group_id=f"{config.prefix}-users",
            user_ids=[default_user.user_id, app_user.user_id],
        )
        group.node.add_dependency(default_user, app_user)
        subnets = network.vpc.select_subnets(subnet_group_name="data").subnet_ids
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            serverless_cache_name=f"{config.prefix}-features",
            engine="valkey",
            major_engine_version="8",
            description="btcpred features, predictions, lease and WebSocket registry",
            subnet_ids=subnets,
            security_group_ids=[self.security_group.security_group_id],
            user_group_id=group.user_group_id,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(
                    unit="GB", maximum=config.cache_max_data_gb
                ),
                ecpu_per_second=elasticache.CfnServerlessCache.ECPUPerSecondProperty(
                    maximum=config.cache_max_ecpu_per_second
                ),
            ),
            snapshot_retention_limit=config.cache_snapshot_retention_days or None,
        )
        self.cache.node.add_dependency(group)
        # Deleted with the stack in every environment: the features, predictions and lease
        # rebuild within minutes of a new cache, and a retained cache would pin the VPC.
        self.name = f"{config.prefix}-features"
        self.host = self.cache.attr_endpoint_address
        self.port = self.cache.attr_endpoint_port

    def allow_from(self, peer: ec2.ISecurityGroup) -> None:
        """Let ``peer`` reach the cache (the primary port; 6380 is the read-replica port)."""
        for port in (PORT, PORT + 1):
            self.security_group.add_ingress_rule(
                peer, ec2.Port.tcp(port), "btcpred functions to the feature store"
            )
