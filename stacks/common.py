"""Small helpers every construct module shares: retention periods, removal policies, tags."""

from __future__ import annotations

from typing import Final

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

from stacks.config import EnvConfig

__all__ = ["data_removal_policy", "log_retention"]

_RETENTION: Final = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
}


def log_retention(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention period of ``days`` (validated by the config table)."""
    return _RETENTION[days]


def data_removal_policy(config: EnvConfig) -> RemovalPolicy:
    """What happens to stateful resources when the stack is deleted: kept in environments
    that retain data (prod), deleted elsewhere (a bucket must be emptied first). The cache is
    always deleted (its content rebuilds within minutes) and the database snapshotted
    (:mod:`stacks.database`)."""
    # RETAIN_ON_UPDATE_OR_DELETE, not RETAIN: a first deploy that fails and rolls back must not
    # leave named resources behind that make the retry fail with "already exists".
    return RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE if config.retain_data else RemovalPolicy.DESTROY
