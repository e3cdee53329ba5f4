"""The client-facing APIs: a WebSocket API (``$connect`` with the token check, ``$disconnect``,
``$default``) and an HTTP API (``GET /health``, ``GET /prediction/latest``), each with a
throttled stage and JSON access logs."""

from __future__ import annotations

import json

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.common import log_retention
from stacks.config import EnvConfig

__all__ = ["ApiGatewayAccount", "ClientApis"]

WEBSOCKET_STAGE = "live"
_WS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "time": "$context.requestTimeEpoch",
    "routeKey": "$context.routeKey",
    "eventType": "$context.eventType",
    "connectionId": "$context.connectionId",
    "status": "$context.status",
    "error": "$context.error.message",
    "integrationError": "$context.integration.error",
    "latency": "$context.integrationLatency",
}
_HTTP_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "time": "$context.requestTimeEpoch",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latency": "$context.responseLatency",
    "integrationError": "$context.integrationErrorMessage",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """Stage access-log settings (jsii wants a class implementing the interface)."""

    def __init__(self, group: logs.ILogGroup, fields: dict[str, str]) -> None:
        self._destination = apigwv2.LogGroupLogDestination(group)
        self._format = apigw.AccessLogFormat.custom(json.dumps(fields))

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


class ApiGatewayAccount(Construct):
    """The account-level role API Gateway needs to write stage access logs.

    One ``AWS::ApiGateway::Account`` per account and region: deploying two environments into
    one account sets the same role twice, which is harmless (docs/deploy.md).
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        role = iam.Role(
            self,
            "CloudWatchRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                )
            ],
        )
        self.account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=role.role_arn)


class ClientApis(Construct):
    """Attributes ``websocket_api``, ``websocket_stage``, ``http_api``, ``http_stage``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvConfig,
        websocket_fn: lambda_.IFunction,
        http_fn: lambda_.IFunction,
        account: ApiGatewayAccount,
    ) -> None:
        super().__init__(scope, construct_id)
        ws = integrations.WebSocketLambdaIntegration
        self.websocket_api = apigwv2.WebSocketApi(
            self,
            "WebSocket",
            api_name=f"{config.prefix}-websocket",
            description="Live predictions; connect with ?token=...&symbol=BTCUSDT",
            connect_route_options=apigwv2.WebSocketRouteOptions(
                integration=ws("ConnectIntegration", websocket_fn)
            ),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(
                integration=ws("DisconnectIntegration", websocket_fn)
            ),
            default_route_options=apigwv2.WebSocketRouteOptions(
                integration=ws("MessageIntegration", websocket_fn)
            ),
        )
        self.websocket_stage = apigwv2.WebSocketStage(
            self,
            "WebSocketStage",
            web_socket_api=self.websocket_api,
            stage_name=WEBSOCKET_STAGE,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.websocket_rate_limit, burst_limit=config.websocket_burst_limit
            ),
            access_log_settings=_AccessLogs(
                self._log_group("WebSocketAccessLogs", config), _WS_LOG_FIELDS
            ),
        )
        self.http_api = apigwv2.HttpApi(
            self,
            "Http",
            api_name=f"{config.prefix}-http",
            description="GET /health and GET /prediction/latest",
            create_default_stage=False,
        )
        target = integrations.HttpLambdaIntegration("Api", http_fn)
        for path in ("/health", "/prediction/latest"):
            self.http_api.add_routes(
                path=path, methods=[apigwv2.HttpMethod.GET], integration=target
            )
        self.http_stage = apigwv2.HttpStage(
            self,
            "HttpStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.http_rate_limit, burst_limit=config.http_burst_limit
            ),
            access_log_settings=_AccessLogs(
                self._log_group("HttpAccessLogs", config), _HTTP_LOG_FIELDS
            ),
        )
        # Stage logging needs the account's CloudWatch role in place first.
        for stage in (self.websocket_stage, self.http_stage):
            stage.node.add_dependency(account.account)

    def _log_group(self, construct_id: str, config: EnvConfig) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            retention=log_retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )

    @property
    def websocket_url(self) -> str:
        """``wss://…/live``: what clients connect to."""
        return self.websocket_stage.url

    @property
    def callback_url(self) -> str:
        """``https://…/live``: the management API the functions post to."""
        return self.websocket_stage.callback_url
