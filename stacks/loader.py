"""The history loader's wiring: the raw-history bucket tells an SQS queue of every new
``market/….avro`` object, the loader reads the queue in batches and writes PostgreSQL.

S3 → SQS → Lambda rather than S3 → Lambda: the queue holds what arrives while the loader or the
database is down, redelivers a failed object (the loader reports item failures, so a batch's good
objects are not loaded again) and moves an object that failed five times to a dead-letter queue
an alarm watches. The notification is CDK's ``add_event_notification``, which applies it through
its ``BucketNotificationsHandler`` custom resource after the queue's policy exists; both live in
this one stack, so nothing crosses a stack boundary (docs/decisions.md 54, 95).
"""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import EnvConfig
from stacks.database import DATABASE_NAME, HistoryDatabase
from stacks.functions import LOADER_TIMEOUT_S
from stacks.signals import LOADER, NAMESPACE
from stacks.storage import MARKET_PREFIX

__all__ = [
    "BATCH_SIZE",
    "MARKET_SUFFIX",
    "MAX_RECEIVE_COUNT",
    "VISIBILITY_TIMEOUT_S",
    "HistoryLoader",
]

MARKET_SUFFIX: Final = ".avro"
BATCH_SIZE: Final = 10
"""Notifications per invocation (SQS's own maximum without a batching window)."""
MAX_RECEIVE_COUNT: Final = 5
"""Deliveries of one notification before it goes to the dead-letter queue."""
VISIBILITY_TIMEOUT_S: Final = 6 * LOADER_TIMEOUT_S
"""AWS's advice for an SQS event source: six times the function's timeout, so a message being
worked on (and the event source's own retries of a throttled batch) is not delivered twice."""


class HistoryLoader(Construct):
    """The loader's queue, dead-letter queue, notification, permissions, network and environment.

    Parameters
    ----------
    scope, construct_id
        Where the construct goes.
    config
        The environment (names, the event source's maximum concurrency).
    function
        The loader function (built by :class:`stacks.functions.Functions`).
    security_group
        The loader's own group (HTTPS out); the database's port is added here.
    bucket
        The raw-history bucket.
    database
        The history database; it lets the loader's group in.

    Attributes
    ----------
    queue
        What the bucket notifies (SSE-SQS, TLS only); the loader's event source.
    dlq
        Where a notification goes after :data:`MAX_RECEIVE_COUNT` failed deliveries (14 days).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvConfig,
        function: lambda_.Function,
        security_group: ec2.SecurityGroup,
        bucket: s3.IBucket,
        database: HistoryDatabase,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dlq = sqs.Queue(
            self,
            "Failures",
            queue_name=f"{config.prefix}-loader-failures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Objects",
            queue_name=f"{config.prefix}-loader-objects",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(VISIBILITY_TIMEOUT_S),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=MAX_RECEIVE_COUNT, queue=self.dlq
            ),
        )
        bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(self.queue),
            s3.NotificationKeyFilter(prefix=f"{MARKET_PREFIX}/", suffix=MARKET_SUFFIX),
        )
        function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=config.loader_max_concurrency,
            )
        )
        # ingress on the database's group and egress on the loader's, on the instance's port
        database.allow_from(security_group)
        self._permissions(function, bucket, database)
        for name, value in {
            "DATABASE_SECRET_ARN": database.secret.secret_arn,
            "DATABASE_SSLMODE": "require",
            "DATABASE_NAME": DATABASE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_SERVICE_NAME": LOADER,
        }.items():
            function.add_environment(name, value)

    @staticmethod
    def _permissions(fn: lambda_.Function, bucket: s3.IBucket, database: HistoryDatabase) -> None:
        # Read-only, and only the market history: the notification names the object, so no
        # ListBucket (a missing object then reads as AccessDenied, and the message is retried).
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{MARKET_PREFIX}/*")],
            )
        )
        # GetSecretValue alone (grant_read would add DescribeSecret); the secret is encrypted
        # with the AWS-managed aws/secretsmanager key, whose use needs no statement here.
        fn.add_to_role_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"],
                resources=[database.secret.secret_arn],
            )
        )
