"""Redis credentials: the secret's JSON, the Secrets Manager port (a hand-written client), the
lazily read credentials of the inference function, and ``connect``'s one-source rule.

Secrets Manager itself (moto) and real servers with an ACL user: tests/integration/
test_redis_auth.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import redis

from btcpred.credentials import (
    CredentialsError,
    RedisCredentials,
    SecretMalformedError,
    SecretUnreadableError,
    fetch_redis_credentials,
    parse_redis_credentials,
)
from btcpred.redisconn import LazyCredentials, connect
from btcpred.settings import ConfigError

ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:btcpred/redis-app-AbCdEf"
GOOD = '{"username": "app", "password": "s3cret-pa55word-16+"}'


class FakeSecrets:
    """A Secrets Manager client that answers from a dict, or fails as botocore's ClientError."""

    def __init__(self, secrets: Mapping[str, Mapping[str, Any]]) -> None:
        self.secrets = secrets
        self.calls: list[str] = []

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]:  # noqa: N803 - boto3's
        self.calls.append(SecretId)
        if SecretId not in self.secrets:
            raise AccessDenied()
        return self.secrets[SecretId]


class AccessDenied(Exception):  # noqa: N818 - botocore's ClientError shape
    response = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}


def test_the_secret_gives_the_credentials_and_other_keys_are_ignored() -> None:
    found = parse_redis_credentials(
        '{"username": "app", "password": "pw", "engine": "valkey", "host": "x"}'
    )

    assert found == RedisCredentials("app", "pw")


def test_the_password_never_shows_in_a_repr() -> None:
    credentials = RedisCredentials("app", "s3cret-pa55word-16+")

    assert "s3cret" not in repr(credentials)
    assert "s3cret" not in str(credentials)
    assert "app" in repr(credentials)


@pytest.mark.parametrize(
    "secret",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        '{"username": "app"}',
        '{"password": "pw"}',
        '{"username": "", "password": "pw"}',
        '{"username": "app", "password": ""}',
        '{"username": "app", "password": null}',
        '{"username": ["app"], "password": "pw"}',
        '{"username": "app", "password": 12345678}',
    ],
)
def test_a_malformed_secret_is_a_typed_config_error_that_names_the_variable(secret: str) -> None:
    with pytest.raises(SecretMalformedError) as raised:
        parse_redis_credentials(secret)

    assert isinstance(raised.value, CredentialsError)
    assert isinstance(raised.value, ConfigError)  # a configuration problem, mapped as one
    assert str(raised.value).startswith("REDIS_AUTH_SECRET_ARN: ")
    assert "12345678" not in str(raised.value)


def test_fetch_reads_the_secret_through_the_given_client() -> None:
    client = FakeSecrets({ARN: {"ARN": ARN, "SecretString": GOOD}})

    assert fetch_redis_credentials(client, ARN) == RedisCredentials("app", "s3cret-pa55word-16+")
    assert client.calls == [ARN]


def test_a_failed_call_is_secret_unreadable_with_the_aws_error_code() -> None:
    with pytest.raises(SecretUnreadableError) as raised:
        fetch_redis_credentials(FakeSecrets({}), ARN)

    assert str(raised.value) == (f"REDIS_AUTH_SECRET_ARN={ARN}: AccessDeniedException: not allowed")
    assert isinstance(raised.value.__cause__, AccessDenied)


def test_a_failure_without_an_aws_error_is_named_by_its_type() -> None:
    class Broken:
        def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]:  # noqa: N803
            raise TimeoutError("read timed out")

    with pytest.raises(SecretUnreadableError, match="TimeoutError: read timed out"):
        fetch_redis_credentials(Broken(), ARN)


@pytest.mark.parametrize(
    "response",
    [{"SecretBinary": b"{}"}, {"SecretString": '{"username": "app"}'}],
    ids=["binary", "no-password"],
)
def test_a_secret_without_credentials_is_malformed_and_names_the_arn(
    response: Mapping[str, Any],
) -> None:
    with pytest.raises(SecretMalformedError) as raised:
        fetch_redis_credentials(FakeSecrets({ARN: response}), ARN)

    assert str(raised.value).startswith(f"REDIS_AUTH_SECRET_ARN={ARN}: ")


# -- LazyCredentials: the inference function's way ---------------------------------------------
class Flaky:
    """Fails until ``fixed``; counts attempts."""

    def __init__(self) -> None:
        self.fixed = False
        self.attempts = 0

    def __call__(self) -> RedisCredentials:
        self.attempts += 1
        if not self.fixed:
            raise SecretUnreadableError("REDIS_AUTH_SECRET_ARN=x: AccessDeniedException: no")
        return RedisCredentials("app", "pw")


def test_lazy_credentials_retry_a_failure_only_after_the_interval_then_keep_them() -> None:
    now = [100.0]
    fetch = Flaky()
    lazy = LazyCredentials(fetch, retry_s=30.0, clock=lambda: now[0])

    with pytest.raises(redis.ConnectionError) as first:
        lazy.get_credentials()
    fetch.fixed = True
    now[0] = 129.0
    with pytest.raises(redis.ConnectionError):
        lazy.get_credentials()  # too soon: the last error again, no new attempt
    attempts_before_retry = fetch.attempts
    now[0] = 130.0
    found = lazy.get_credentials()
    now[0] = 10_000.0

    assert isinstance(first.value.__cause__, SecretUnreadableError)
    assert not isinstance(first.value, redis.AuthenticationError)  # an outage: retryable
    assert attempts_before_retry == 1
    assert found == ("app", "pw")
    assert lazy.get_credentials() == ("app", "pw")
    assert fetch.attempts == 2  # kept once read
    assert lazy.last_error is None


def test_lazy_credentials_read_raises_the_typed_error() -> None:
    lazy = LazyCredentials(Flaky())

    with pytest.raises(SecretUnreadableError):
        lazy.read()
    assert isinstance(lazy.last_error, SecretUnreadableError)


# -- connect: one source of credentials ---------------------------------------------------------
@pytest.mark.parametrize("cluster", [False, True])
@pytest.mark.parametrize(
    "credentials", [RedisCredentials("app", "pw"), LazyCredentials(Flaky())], ids=["given", "lazy"]
)
def test_credentials_in_the_url_and_given_as_well_are_refused(
    cluster: bool, credentials: RedisCredentials | LazyCredentials
) -> None:
    with pytest.raises(CredentialsError) as raised:
        connect("redis://other:secret-pw@127.0.0.1:9/0", cluster=cluster, credentials=credentials)

    assert "secret-pw" not in str(raised.value)
