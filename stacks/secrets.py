"""Secrets Manager: the Binance API key (filled in by the operator) and the WebSocket token
(generated). Functions read them at cold start; no secret value is in a template or an
environment variable."""

from __future__ import annotations

from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from stacks.common import data_removal_policy
from stacks.config import EnvConfig

__all__ = ["AppSecrets"]


class AppSecrets(Construct):
    """Attributes ``binance_api_key`` and ``websocket_token``.

    ``binance_api_key`` starts as a generated placeholder: the operator puts the real key
    (``aws secretsmanager put-secret-value``, docs/deploy.md) before starting the ingestor.
    ``websocket_token`` is 40 random letters and digits: clients pass it as ``?token=`` on
    ``$connect``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig) -> None:
        super().__init__(scope, construct_id)
        self.binance_api_key = sm.Secret(
            self,
            "BinanceApiKey",
            secret_name=f"{config.prefix}/binance-api-key",
            description="Binance API key (X-MBX-APIKEY) for the SBE stream; set by the operator",
            generate_secret_string=sm.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
            removal_policy=data_removal_policy(config),
        )
        self.websocket_token = sm.Secret(
            self,
            "WebSocketToken",
            secret_name=f"{config.prefix}/websocket-token",
            description="Token WebSocket clients pass on $connect (?token=...)",
            generate_secret_string=sm.SecretStringGenerator(
                exclude_punctuation=True, include_space=False, password_length=40
            ),
            removal_policy=data_removal_policy(config),
        )
