"""AWS edge shared by the Lambda handlers: the Secrets Manager client and the Redis credentials.

Not part of the pure core (tests/unit/test_pure_core.py: modules named ``aws.py`` are the AWS
side of a port). boto3 is imported only when a client is made, so a function configured without
a secret (the HTTP API locally, every test without ``REDIS_AUTH_SECRET_ARN``) never loads it.

Cold start, per function:

- aggregator, HTTP API, WebSocket: :func:`redis_credentials` reads the secret now; a secret
  that cannot be read fails the cold start with a :class:`~btcpred.credentials.CredentialsError`
  (Lambda retries the batch or the request with a new cold start).
- inference: :func:`lazy_redis_credentials` tries now and logs a failure, but the function
  starts anyway and predicts from REST (direct-REST mode) until the secret can be read; it is
  tried again when Redis is next needed, at most every :data:`SECRET_RETRY_S`.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from btcpred.credentials import (
    CredentialsError,
    RedisCredentials,
    SecretsClient,
    fetch_redis_credentials,
)
from btcpred.redisconn import LazyCredentials

__all__ = ["SECRET_RETRY_S", "lazy_redis_credentials", "redis_credentials", "secrets_client"]

log = logging.getLogger("btcpred.aws")

SECRET_RETRY_S: Final = 30.0
"""The inference function reads an unreadable credentials secret again at most this often."""


def secrets_client(*, timeout_s: float = 2.0, attempts: int = 2) -> Any:
    """A boto3 ``secretsmanager`` client with short timeouts (boto3's default is 60 s)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": attempts, "mode": "standard"},
    )
    return boto3.client("secretsmanager", config=config)


def redis_credentials(
    arn: str | None, secrets: SecretsClient | None = None
) -> RedisCredentials | None:
    """The Redis credentials in secret ``arn``, read now; None when no secret is configured.

    ``secrets`` is the function's Secrets Manager client when it already has one (the
    WebSocket function reads its token through the same client); else one is made.

    Raises
    ------
    CredentialsError
        The secret cannot be read or holds no credentials.
    """
    if arn is None:
        return None
    return fetch_redis_credentials(secrets if secrets is not None else secrets_client(), arn)


def lazy_redis_credentials(
    arn: str | None, secrets: SecretsClient | None = None
) -> LazyCredentials | None:
    """For a function that must start without Redis: the credentials in ``arn``, read now if
    possible, else logged and read again when a connection next needs them (None: no secret).
    """
    if arn is None:
        return None
    client = secrets if secrets is not None else secrets_client(timeout_s=1.0, attempts=1)
    credentials = LazyCredentials(
        lambda: fetch_redis_credentials(client, arn), retry_s=SECRET_RETRY_S
    )
    try:
        credentials.read()
    except CredentialsError as exc:
        log.error("Redis credentials unreadable, starting without Redis: %s", exc)
    return credentials
