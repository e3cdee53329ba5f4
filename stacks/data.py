"""The event stream: Kinesis (encrypted) and the aggregator's on-failure queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.common import data_removal_policy
from stacks.config import EnvConfig

__all__ = ["EventStream"]


class EventStream(Construct):
    """The market-event stream the ingestor writes and the aggregator reads.

    Attributes
    ----------
    stream
        Provisioned with ``config.kinesis_shards`` shards, or on-demand when that is 0; the
        partition key is the symbol, so one symbol is one shard's worth of order.
    dlq
        Where Lambda sends a description (shard, sequence range) of a batch it gave up on after
        the configured retries or record age; the records themselves stay in the stream for its
        retention period, so an operator can re-read them.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig) -> None:
        super().__init__(scope, construct_id)
        on_demand = config.kinesis_shards == 0
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=f"{config.prefix}-market-events",
            stream_mode=kinesis.StreamMode.ON_DEMAND
            if on_demand
            else kinesis.StreamMode.PROVISIONED,
            shard_count=None if on_demand else config.kinesis_shards,
            retention_period=Duration.hours(config.kinesis_retention_hours),
            encryption=kinesis.StreamEncryption.MANAGED,
            removal_policy=data_removal_policy(config),
        )
        self.dlq = sqs.Queue(
            self,
            "AggregatorFailures",
            queue_name=f"{config.prefix}-aggregator-failures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
