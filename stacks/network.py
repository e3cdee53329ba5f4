"""The network: public, private-with-egress and isolated subnets, NAT, an S3 gateway endpoint,
flow logs.

Functions (and the coming Fargate ingestor) run in the private subnets and reach Binance and the
public AWS endpoints through NAT; the cache and the database sit in the isolated subnets. There
is deliberately no ``execute-api`` interface endpoint: with private DNS it would capture every
``*.execute-api`` name in the VPC and break the functions' ``@connections`` calls to the public
WebSocket API.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.common import log_retention
from stacks.config import EnvConfig

__all__ = ["Network"]


class Network(Construct):
    """The VPC every other construct lives in.

    Attributes
    ----------
    vpc
        Subnet groups ``public``, ``app`` (private with egress) and ``data`` (isolated).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig) -> None:
        super().__init__(scope, construct_id)
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            max_azs=config.max_azs,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                ),
                ec2.SubnetConfiguration(
                    name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
            restrict_default_security_group=False,
        )

    @property
    def app_subnets(self) -> ec2.SubnetSelection:
        """Where functions run: private, with a route to the internet through NAT."""
        return ec2.SubnetSelection(subnet_group_name="app")

    @property
    def data_subnets(self) -> ec2.SubnetSelection:
        """Where the cache and the database live: no route in or out of the VPC."""
        return ec2.SubnetSelection(subnet_group_name="data")
