"""cdk-nag: the AWS Solutions checks on every synth, and every acknowledgement in one place.

Each acknowledgement names one rule (with the exact finding for IAM wildcards) on the narrowest
construct it applies to, with the reason a reviewer can check; docs/security.md explains the
policy decisions behind them. Anything not listed here fails the synth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from stacks.apis import WEBSOCKET_STAGE
from stacks.storage import HISTORY_PREFIX, MARKET_PREFIX, MODEL_PREFIX

if TYPE_CHECKING:
    from stacks.btcpred_stack import BtcpredStack

__all__ = ["attach_checks"]

_ENI = (
    "Lambda's VPC attachment: the EC2 network-interface actions (AWSLambdaVPCAccessExecutionRole's "
    "actions, inline) support no resource-level permissions, so AWS requires Resource '*'"
)
_RUNTIME = (
    "Python 3.12 on purpose: the layers are built and import-tested for cp312 arm64 "
    "(onnxruntime needs Amazon Linux 2023's glibc); moving to a newer runtime is a layer "
    "rebuild and a test run, tracked in docs/deploy.md"
)
_POST = (
    "one stage's @connections/* with POST only: connection ids are only known at run time, so "
    "this is the narrowest resource execute-api:ManageConnections can name"
)


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason))


def _ref(stack: Stack, token: str) -> str:
    """cdk-nag's spelling of a token inside a finding id (``<LogicalId.Arn>``, ``<Ref>``)."""
    resolved: Any = stack.resolve(token)
    if "Fn::GetAtt" in resolved:
        logical, attr = resolved["Fn::GetAtt"]
        return f"<{logical}.{attr}>"
    return f"<{resolved['Ref']}>"


def _functions(stack: BtcpredStack) -> None:
    fns = stack.functions.functions
    for fn in fns.values():
        _ack(fn, "AwsSolutions-L1", _RUNTIME)
        _ack(fn.role or fn, "AwsSolutions-IAM5[Resource::*]", _ENI)
    inference, websocket = fns["inference"].role, fns["websocket"].role
    if inference is None or websocket is None:
        raise RuntimeError("the functions have their own roles")
    b = stack.buckets
    _ack(
        inference,
        f"AwsSolutions-IAM5[Resource::{_ref(stack, b.models.bucket_arn)}/{MODEL_PREFIX}/*]",
        "read-only (s3:GetObject) on the model registry's models/ prefix: the loaded version "
        "is only known at run time (current.json)",
    )
    _ack(
        inference,
        f"AwsSolutions-IAM5[Resource::{_ref(stack, b.predictions.bucket_arn)}/{HISTORY_PREFIX}/*]",
        "write-only (s3:PutObject) under predictions/: object names carry the hour and writer",
    )
    loader = fns["loader"].role
    if loader is None:
        raise RuntimeError("the functions have their own roles")
    _ack(
        loader,
        f"AwsSolutions-IAM5[Resource::{_ref(stack, b.raw_history.bucket_arn)}/{MARKET_PREFIX}/*]",
        "read-only (s3:GetObject) under market/ of the raw-history bucket: each notification "
        "names a new object (symbol, data type and date in its key), known only at run time",
    )
    api = _ref(stack, stack.apis.websocket_api.api_id)
    stage = f"{api}/{WEBSOCKET_STAGE}"
    post = f"arn:aws:execute-api:{stack.region}:{stack.account}:{stage}/POST/@connections/*"
    for role in (inference, websocket):
        _ack(role, f"AwsSolutions-IAM5[Resource::{post}]", _POST)


def _apis(stack: BtcpredStack) -> None:
    ws, http = stack.apis.websocket_api, stack.apis.http_api
    _ack(
        ws,
        "AwsSolutions-APIG4",
        "$connect checks the client's token (Secrets Manager) in the WebSocket function and "
        "refuses the connection with 401; API Gateway allows authorizers only on $connect, and "
        "$disconnect/$default run on an accepted connection only (docs/security.md)",
    )
    _ack(
        http,
        "AwsSolutions-APIG4",
        "public read-only endpoints by design: /health and the latest prediction, the same data "
        "every WebSocket client gets; throttled at the stage (docs/security.md)",
    )
    _ack(
        stack.node.find_child("ApiGatewayAccount"),
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs]",
        "the account-level role API Gateway uses to write every API's access logs; AWS's "
        "managed policy is the documented one for it",
    )


def _data(stack: BtcpredStack) -> None:
    c = stack.config
    _ack(stack.events.dlq, "AwsSolutions-SQS3", "this queue is the aggregator's on-failure DLQ")
    db = stack.database.instance
    _ack(
        db,
        "AwsSolutions-RDS11",
        "the default port: a non-default port hides nothing from a client inside the VPC, "
        "and only the history functions' security group may connect at all",
    )
    if not c.db_multi_az:
        _ack(
            db,
            "AwsSolutions-RDS3",
            f"{c.name}: single-AZ by the config table (cost); prod is Multi-AZ",
        )
    if not c.deletion_protection:
        _ack(
            db, "AwsSolutions-RDS10", f"{c.name}: deletable by the config table; prod is protected"
        )
    rotation = "rotated by the documented procedure in docs/deploy.md, not automatically: {why}"
    _ack(
        stack.secrets.binance_api_key,
        "AwsSolutions-SMG4",
        rotation.format(why="the key is issued by Binance, Secrets Manager cannot renew it"),
    )
    _ack(
        stack.secrets.websocket_token,
        "AwsSolutions-SMG4",
        rotation.format(why="every client holds the token, so a rotation is announced"),
    )
    _ack(
        stack.cache.default_secret,
        "AwsSolutions-SMG4",
        "the password of the disabled 'default' cache user: the user is off, so the password "
        "opens nothing and is never read; ElastiCache only requires that it exists",
    )
    _ack(
        stack.cache.credentials,
        "AwsSolutions-SMG4",
        rotation.format(
            why="the ElastiCache user takes two passwords, so the new one is added, functions "
            "recycle, then the old one is removed"
        ),
    )


def _ingestor(stack: BtcpredStack) -> None:
    task = stack.ingestor.task_definition
    _ack(
        task,
        "AwsSolutions-ECS2",
        "the container's environment holds names, URLs, sizes and the Binance key secret's ARN, "
        "no secret value: the process reads the key itself (GetSecretValue on that one secret), "
        "the contract of btcpred ingest (BINANCE_API_KEY_SECRET_ARN, docs/security.md)",
    )
    if task.execution_role is None:
        raise RuntimeError("a Fargate task with an image asset has an execution role")
    _ack(
        task.execution_role,
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken only (the image pull's login): ECR offers no resource-level "
        "permission for it, so AWS requires Resource '*'; the pulls themselves are limited to "
        "the CDK assets repository",
    )


# CDK's singleton that applies the bucket's notification configuration (docs/decisions.md 95).
_NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


def _notifications(stack: BtcpredStack) -> None:
    handler = stack.node.try_find_child(_NOTIFICATIONS_HANDLER)
    if handler is None:
        raise RuntimeError("the raw-history bucket's notification has no CDK handler")
    _ack(
        handler.node.find_child("Role"),
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]",
        "CDK's BucketNotificationsHandler custom resource (applies the raw-history bucket's "
        "notification to the loader's queue at deploy time): CDK attaches the managed policy "
        "for its own logs; its only other permission is s3:PutBucketNotification on that one "
        "bucket, and nothing but CloudFormation invokes it (docs/decisions.md 95)",
    )


def attach_checks(app: App, stack: BtcpredStack) -> None:
    """Run AwsSolutionsChecks on ``app``; acknowledge the reviewed findings of ``stack``."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    _functions(stack)
    _apis(stack)
    _data(stack)
    _ingestor(stack)
    _notifications(stack)
