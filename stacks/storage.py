"""S3: the model registry, the prediction history and the raw market history, plus the bucket
their server access logs go to.

Every bucket is encrypted (SSE-S3), blocks public access, refuses plain HTTP and logs access.
The model registry is versioned (a model can be rolled back by pointer or by version); the
history buckets move to infrequent-access storage after 30 days and expire per environment.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.common import data_removal_policy
from stacks.config import EnvConfig

__all__ = ["HISTORY_PREFIX", "MARKET_PREFIX", "MODEL_PREFIX", "Buckets"]

MODEL_PREFIX = "models"
"""Where the registry lives in the model bucket (``MODEL_PATH=s3://bucket/models``)."""
HISTORY_PREFIX = "predictions"
"""Where the prediction history goes in its bucket."""
MARKET_PREFIX = "market"
"""Where the raw market history (Avro klines and aggregated trades) lives in the raw-history
bucket: ``market/symbol=S/data_type=T/date=D/....avro``; what the loader reads and is told of."""


class Buckets(Construct):
    """Attributes ``models``, ``predictions``, ``raw_history`` and ``access_logs``."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvConfig) -> None:
        super().__init__(scope, construct_id)
        self._removal = data_removal_policy(config)
        self.access_logs = self._bucket(
            "AccessLogs",
            rules=[s3.LifecycleRule(expiration=Duration.days(config.access_log_expiry_days))],
        )
        history_rules = [
            s3.LifecycleRule(
                transitions=[
                    s3.Transition(
                        storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                        transition_after=Duration.days(30),
                    )
                ],
                expiration=Duration.days(config.history_expiry_days),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ]
        model_rules = [
            s3.LifecycleRule(
                noncurrent_version_expiration=Duration.days(90),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ]
        self.models = self._bucket("Models", rules=model_rules, versioned=True, logs="models/")
        self.predictions = self._bucket("Predictions", rules=history_rules, logs="predictions/")
        self.raw_history = self._bucket("RawHistory", rules=history_rules, logs="raw-history/")

    def _bucket(
        self,
        construct_id: str,
        *,
        rules: list[s3.LifecycleRule],
        versioned: bool = False,
        logs: str | None = None,
    ) -> s3.Bucket:
        """A bucket with the settings every bucket shares; ``logs`` is its access-log prefix."""
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=self._removal,
            versioned=versioned,
            lifecycle_rules=rules,
            server_access_logs_bucket=self.access_logs if logs else None,
            server_access_logs_prefix=logs,
        )
