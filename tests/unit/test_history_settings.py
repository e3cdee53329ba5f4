"""The loader's database settings: one source, TLS by default with the secret, clear errors."""

from __future__ import annotations

import pytest

from btcpred.settings.history import DatabaseSettings, database_url
from btcpred.settings.parse import ConfigError

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:btcpred/history-AbCdEf"


def test_the_secret_defaults_to_tls_required() -> None:
    s = DatabaseSettings.from_env({"DATABASE_SECRET_ARN": ARN})
    assert (s.secret_arn, s.url, s.sslmode, s.name) == (ARN, None, "require", "btcpred")


def test_a_url_defaults_to_prefer() -> None:
    s = DatabaseSettings.from_env({"DATABASE_URL": "postgresql://u@h/db"})
    assert (s.url, s.sslmode) == ("postgresql://u@h/db", "prefer")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://h/db", "DATABASE_SECRET_ARN": ARN}, "exactly one"),
        ({"DATABASE_URL": "mysql://h/db"}, "DATABASE_URL"),
        ({"DATABASE_SECRET_ARN": "btcpred/history"}, "DATABASE_SECRET_ARN"),
        ({"DATABASE_SECRET_ARN": ARN, "DATABASE_SSLMODE": "on"}, "DATABASE_SSLMODE"),
        ({"DATABASE_SECRET_ARN": ARN, "DATABASE_NAME": "x;drop"}, "DATABASE_NAME"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        DatabaseSettings.from_env(env)


def test_the_url_from_a_secret_quotes_the_password() -> None:
    url = database_url(
        {"host": "db.example", "port": 5432, "username": "btcpred", "password": "a/b@c:d"},
        sslmode="require",
        default_name="btcpred",
    )
    assert url.startswith("postgresql://btcpred:a%2Fb%40c%3Ad@db.example:5432/btcpred?")
    assert "sslmode=require" in url


def test_a_secret_without_a_password_is_an_error() -> None:
    with pytest.raises(ConfigError, match="password"):
        database_url({"host": "h", "username": "u"}, sslmode="require", default_name="x")
