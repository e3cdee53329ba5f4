"""Redis credentials from a Secrets Manager secret, through a caller-made client.

On AWS the feature store is ElastiCache Serverless with role-based access control: every
function authenticates as the app user. Its user name and password are the JSON SecretString
``{"username": "...", "password": "..."}`` of the secret ``REDIS_AUTH_SECRET_ARN`` names, read
once per cold start; no secret is ever in an environment variable there. Locally the
credentials may be in ``REDIS_URL`` (``redis://user:pass@host:6379/0``) instead.

This module is pure: the Secrets Manager client is made at the edge (:mod:`btcpred.aws`) and
passed in, and only its ``get_secret_value`` call is used (:class:`SecretsClient`).

================================  ================================================================
:class:`CredentialsError`         the secret gives no usable credentials (a :class:`ConfigError`)
:class:`SecretUnreadableError`    Secrets Manager did not return it (denied, missing, unreachable)
:class:`SecretMalformedError`     it was read but is not the expected JSON document
================================  ================================================================

No error message holds the secret's content; they name the variable, the ARN and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from btcpred.settings.parse import ConfigError, Env

__all__ = [
    "CredentialsError",
    "RedisCredentials",
    "SecretMalformedError",
    "SecretUnreadableError",
    "SecretsClient",
    "fetch_redis_credentials",
    "parse_redis_credentials",
]

_VARIABLE = Env.REDIS_AUTH_SECRET_ARN.value


class CredentialsError(ConfigError):
    """The Redis credentials secret gives no usable credentials; the message says why."""


class SecretUnreadableError(CredentialsError):
    """Secrets Manager did not return the secret (access denied, not found, unreachable)."""


class SecretMalformedError(CredentialsError):
    """The secret is not a JSON object with non-empty string ``username`` and ``password``."""


@dataclass(frozen=True, slots=True)
class RedisCredentials:
    """A Redis ACL user and its password (the password is left out of ``repr``)."""

    username: str
    password: str = field(repr=False)


class SecretsClient(Protocol):
    """The one call of a boto3 ``secretsmanager`` client this module makes."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]:  # noqa: N803 - boto3's name
        """The secret's current version: ``{"SecretString": ..., ...}``."""


def parse_redis_credentials(secret_string: str) -> RedisCredentials:
    """The credentials in a SecretString ``{"username": "...", "password": "..."}``.

    Other keys (``engine``, ``host``, … as rotation templates write them) are ignored.

    Raises
    ------
    SecretMalformedError
        Not JSON, not an object, or ``username``/``password`` missing, not strings or empty.
    """
    return _parse(secret_string, _VARIABLE)


def _parse(secret_string: str, where: str) -> RedisCredentials:
    try:
        doc = orjson.loads(secret_string)
    except orjson.JSONDecodeError:
        raise SecretMalformedError(f"{where}: the secret is not JSON") from None
    if not isinstance(doc, dict):
        raise SecretMalformedError(f"{where}: the secret is not a JSON object")
    found: dict[str, str] = {}
    for name in ("username", "password"):
        value = doc.get(name)
        if value is None:
            raise SecretMalformedError(f"{where}: the secret has no {name!r}")
        if not isinstance(value, str) or not value:
            raise SecretMalformedError(f"{where}: the secret's {name!r} is not a non-empty string")
        found[name] = value
    return RedisCredentials(found["username"], found["password"])


def fetch_redis_credentials(client: SecretsClient, arn: str) -> RedisCredentials:
    """Read secret ``arn`` through ``client`` and parse it (:func:`parse_redis_credentials`).

    Parameters
    ----------
    client
        An already built boto3 ``secretsmanager`` client (or anything with its
        ``get_secret_value``); its timeouts bound how long this takes.
    arn
        The secret's ARN (``REDIS_AUTH_SECRET_ARN``).

    Raises
    ------
    SecretUnreadableError
        The call failed; the message carries the AWS error code when there is one.
    SecretMalformedError
        The secret is binary, or not the expected JSON document.
    """
    try:
        response = client.get_secret_value(SecretId=arn)
    except Exception as exc:  # the SDK's exceptions are the edge's: typed here, by the port
        raise SecretUnreadableError(f"{_VARIABLE}={arn}: {_aws_error(exc)}") from exc
    secret = response.get("SecretString")
    if not isinstance(secret, str):
        raise SecretMalformedError(f"{_VARIABLE}={arn}: the secret has no SecretString (binary?)")
    return _parse(secret, f"{_VARIABLE}={arn}")


def _aws_error(exc: Exception) -> str:
    """``ClientError``'s error code and message, else the exception's type and text."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    if isinstance(error, dict) and error.get("Code"):
        return f"{error['Code']}: {error.get('Message') or 'no message'}"
    return f"{type(exc).__name__}: {exc}"
