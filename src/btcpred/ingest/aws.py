"""The ingestor's AWS side: the Kinesis client and the API key from Secrets Manager.

Not part of the pure core (modules named ``aws.py`` are the AWS side of a port). The endpoint
comes from boto3's own configuration (``AWS_ENDPOINT_URL_KINESIS``, ``AWS_ENDPOINT_URL``), so
the same code runs against Kinesis, moto's server or kinesalite.
"""

from __future__ import annotations

from typing import Any

__all__ = ["client_config", "kinesis_client", "read_api_key"]


def client_config(timeout_s: float = 5.0) -> Any:
    """The botocore configuration of the ingestor's Kinesis client: short timeouts, boto3's own
    retries off (the producer retries per entry), no client-side parameter validation (the
    producer builds every request itself; the server validates anyway)."""
    from botocore.config import Config

    return Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 1, "mode": "standard"},
        max_pool_connections=8,
        parameter_validation=False,
    )


def kinesis_client(*, timeout_s: float = 5.0) -> Any:
    """A boto3 Kinesis client configured by :func:`client_config`; endpoint and credentials
    from boto3's standard sources."""
    import boto3

    return boto3.client("kinesis", config=client_config(timeout_s))


def read_api_key(arn: str) -> str:
    """The bare API key stored in secret ``arn`` (a JSON ``{"api_key": ...}`` also works).

    Raises
    ------
    CredentialsError
        The secret cannot be read or holds no key (the message says which).
    """
    import boto3
    import orjson
    from botocore.exceptions import BotoCoreError, ClientError

    from btcpred.credentials import CredentialsError

    try:
        value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except (BotoCoreError, ClientError, KeyError) as exc:
        raise CredentialsError(f"cannot read the Binance API key secret {arn}: {exc}") from None
    text = str(value).strip()
    if text.startswith("{"):
        try:
            text = str(orjson.loads(text).get("api_key", "")).strip()
        except (orjson.JSONDecodeError, AttributeError):
            text = ""
    if not text or any(c.isspace() for c in text):
        raise CredentialsError(f"the secret {arn} holds no API key")
    return text
