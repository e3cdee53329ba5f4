"""Monitoring: the overview dashboard an operator opens first, and the alarms that page a person.

The alarms (``stacks/alarms.py``) publish their ALARM and OK transitions to one SNS topic,
encrypted with a customer-managed KMS key: CloudWatch cannot publish to a topic encrypted with
the AWS-managed ``aws/sns`` key, whose policy cannot be changed to let it in. The key's policy
and the topic's policy let ``cloudwatch.amazonaws.com`` in for this account's
``{prefix}-*`` alarms only; the topic refuses requests without TLS. Subscribe people to the
topic (``{prefix}-alarms``) after deploying (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.alarms import build_alarms
from stacks.common import data_removal_policy
from stacks.config import EnvConfig
from stacks.dashboard import build_dashboard
from stacks.signals import MonitoredResources, Signals

__all__ = ["MonitoredResources", "Monitoring"]


class Monitoring(Construct):
    """The alarm topic, the alarms and the ``{prefix}-overview`` dashboard.

    Parameters
    ----------
    scope, construct_id
        Where the construct goes.
    config
        The environment: its prefix, symbols, sizes and ``alarms`` thresholds.
    resources
        What is watched.

    Attributes
    ----------
    key
        The topic's KMS key (rotated yearly).
    topic
        Where every alarm sends its ALARM and OK notifications.
    alarms
        The alarms by short name (``predictor-stalled``, ``lambda-errors-inference``, …).
    dashboard
        The overview dashboard.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvConfig,
        resources: MonitoredResources,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key, self.topic = _alarm_topic(self, config)
        signals = Signals(resources)
        self.alarms: Mapping[str, cw.Alarm] = build_alarms(
            self, config=config, signals=signals, topic=self.topic
        )
        self.dashboard: cw.Dashboard = build_dashboard(
            self, config=config, signals=signals, alarms=self.alarms
        )


def _cloudwatch_alarms_only(scope: Construct, config: EnvConfig) -> dict[str, dict[str, str]]:
    """Conditions that let CloudWatch act only for this account's ``{prefix}-*`` alarms."""
    stack = Stack.of(scope)
    return {
        "StringEquals": {"aws:SourceAccount": stack.account},
        "ArnLike": {
            "aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}"
            f":alarm:{config.prefix}-*"
        },
    }


def _alarm_topic(scope: Construct, config: EnvConfig) -> tuple[kms.Key, sns.Topic]:
    cloudwatch = iam.ServicePrincipal("cloudwatch.amazonaws.com")
    key = kms.Key(
        scope,
        "TopicKey",
        description=f"{config.prefix}: encrypts the alarm topic",
        enable_key_rotation=True,
        pending_window=Duration.days(7),
        removal_policy=data_removal_policy(config),
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarmsPublishToTheTopic",
            principals=[cloudwatch],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],  # in a key policy, "*" is this key
            conditions=_cloudwatch_alarms_only(scope, config),
        )
    )
    topic = sns.Topic(
        scope,
        "Topic",
        topic_name=f"{config.prefix}-alarms",
        display_name=f"btcpred {config.name} alarms",
        master_key=key,
        enforce_ssl=True,
    )
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish",
            principals=[cloudwatch],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions=_cloudwatch_alarms_only(scope, config),
        )
    )
    return key, topic
