"""The history pipeline's AWS edge: S3 objects in and out, the database secret."""

from __future__ import annotations

import json
from typing import Any

from btcpred.settings.history import DatabaseSettings, database_url

__all__ = ["S3Sink", "connect", "s3_client", "split_s3_uri"]


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client with short connect timeouts and standard retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"}
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``.

    Raises
    ------
    ValueError
        Not an ``s3://`` URI with a bucket.
    """
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"{uri!r} is not an s3://bucket[/prefix] URI")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


class S3Sink:
    """History objects in a bucket; ``put`` is a conditional create (``If-None-Match: *``), so
    an existing object is never replaced, even by a concurrent run."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def keys(self, prefix: str) -> set[str]:
        """Every key under ``prefix``."""
        found: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            found.update(item["Key"] for item in page.get("Contents", []))
        return found

    def put(self, key: str, data: bytes) -> bool:
        """Create the object unless it exists; ``True`` if it was created."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                ContentType="application/avro",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def describe(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"


def connect(settings: DatabaseSettings, secrets: Any | None = None) -> Any:
    """A psycopg2 connection (not autocommit) from a URL or the RDS secret.

    Raises
    ------
    btcpred.settings.parse.ConfigError
        The secret lacks a field.
    psycopg2.OperationalError
        The database cannot be reached.
    """
    import psycopg2

    url = settings.url
    if url is None:
        if secrets is None:
            from btcpred.aws import secrets_client

            secrets = secrets_client(timeout_s=5.0, attempts=3)
        value = secrets.get_secret_value(SecretId=settings.secret_arn)["SecretString"]
        url = database_url(json.loads(value), sslmode=settings.sslmode, default_name=settings.name)
    elif "sslmode=" not in url:
        url += ("&" if "?" in url else "?") + f"sslmode={settings.sslmode}"
    return psycopg2.connect(url)
