"""Settings of the history loader (the ``loader`` function, ``btcpred load``): docs/history.md."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, urlsplit

from btcpred.settings import parse as p
from btcpred.settings.parse import ConfigError, Env

__all__ = ["SSL_MODES", "DatabaseSettings", "database_url"]

SSL_MODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _sslmode(text: str) -> str:
    if text not in SSL_MODES:
        raise ValueError(f"must be one of {', '.join(SSL_MODES)}")
    return text


def _dbname(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}", text):
        raise ValueError("must be a PostgreSQL database name")
    return text


def _postgres_url(text: str) -> str:
    if urlsplit(text).scheme not in ("postgres", "postgresql"):
        raise ValueError("must be a postgresql:// URL")
    return text


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Where ``market_data`` lives: a URL (local runs) or the RDS secret (the function).

    The RDS secret is the JSON CDK generates (``host``, ``port``, ``username``, ``password``,
    ``dbname``); ``sslmode`` defaults to ``require`` (the instance forces TLS).
    """

    url: str | None = field(default=None, repr=False)
    secret_arn: str | None = None
    sslmode: str = "require"
    name: str = "btcpred"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DatabaseSettings:
        """Read ``DATABASE_URL`` or ``DATABASE_SECRET_ARN``, ``DATABASE_SSLMODE``,
        ``DATABASE_NAME``.

        Raises
        ------
        ConfigError
            A bad value, neither source or both.
        """
        url = p.read(env, Env.DATABASE_URL, None, _postgres_url)
        arn = p.read(env, Env.DATABASE_SECRET_ARN, None, p.secret_arn)
        if (url is None) == (arn is None):
            raise ConfigError(
                "set exactly one of DATABASE_URL (postgresql://...) and DATABASE_SECRET_ARN"
            )
        return cls(
            url=url,
            secret_arn=arn,
            sslmode=p.read(env, Env.DATABASE_SSLMODE, "require" if arn else "prefer", _sslmode),
            name=p.read(env, Env.DATABASE_NAME, "btcpred", _dbname),
        )


def database_url(secret: Mapping[str, object], *, sslmode: str, default_name: str) -> str:
    """A libpq URL from an RDS secret's JSON.

    Raises
    ------
    ConfigError
        The secret lacks ``host``, ``username`` or ``password``.
    """
    try:
        host, user, password = (str(secret[k]) for k in ("host", "username", "password"))
    except KeyError as exc:
        raise ConfigError(f"the database secret has no {exc.args[0]!r}") from None
    port = int(str(secret.get("port", 5432)))
    name = str(secret.get("dbname") or default_name)
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
        f"{quote(name, safe='')}?sslmode={sslmode}&connect_timeout=5"
        "&application_name=btcpred-loader"
    )
