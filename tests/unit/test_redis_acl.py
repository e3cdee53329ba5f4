"""The app user's access string, derived from the key schema, and ElastiCache's syntax subset.

That it allows exactly what the functions do, and refuses the rest, is shown on real servers:
tests/integration/test_redis_auth.py.
"""

from __future__ import annotations

import re

import pytest

from btcpred.keys import ACL_COMMANDS, KeySchemaError, RedisKeys, acl_access_string

DEFAULT = (
    "on ~features:{*}:* ~aggregator:{*}:* ~prediction:{*}:* ~inference:lease ~inference:health "
    "~ws:{*}:connections ~ws:conn:* -@all +command +cluster|slots +get +set +mget +getdel +del "
    "+expire +type +lpush +ltrim +lrange +zadd +zrem +zrangebyscore +zremrangebyscore +evalsha "
    "+script|load"
)
# Commands ElastiCache refuses to run (all caches, then Serverless): an access string naming
# one, even to deny it, is rejected (docs.aws.amazon.com/AmazonElastiCache/latest/dg/
# SupportedCommands.html and Clusters.RBAC.html).
ELASTICACHE_RESTRICTED = {
    "acl|setuser", "acl|load", "acl|save", "acl|deluser", "acl|log", "bgrewriteaof", "bgsave",
    "config", "debug", "migrate", "psync", "replicaof", "save", "slaveof", "shutdown", "sync",
    "client|caching", "client|getredir", "client|id", "client|info", "client|kill",
    "client|list", "client|no-evict", "client|pause", "client|tracking", "client|trackinginfo",
    "client|unblock", "client|unpause", "commandlog", "fcall", "fcall_ro", "function", "keys",
    "lastsave", "latency", "memory", "monitor", "move", "object", "pfdebug", "pfselftest",
    "psubscribe", "punsubscribe", "script|kill", "slowlog", "swapdb", "wait",
}  # fmt: skip
RESTRICTED_CLUSTER = {"addslots", "addslotsrange", "bumpepoch", "delslots", "delslotsrange"}
RESTRICTED_CLUSTER |= {"failover", "flushslots", "forget", "links", "meet", "setslot"}
RESTRICTED_CLUSTER |= {"count-failure-reports"}


def test_the_default_schema_gives_this_access_string() -> None:
    assert acl_access_string(RedisKeys()) == DEFAULT


def test_the_patterns_follow_the_configured_prefixes_and_prediction_key() -> None:
    keys = RedisKeys(features_prefix="f1", state_prefix="agg.v2", prediction_key="p:{symbol}:now")

    assert keys.acl_key_patterns() == (
        "f1:{*}:*",
        "agg.v2:{*}:*",
        "p:{*}:now",  # no ':latest' suffix: the key itself and what derives from it
        "p:{*}:now:*",
        "inference:lease",
        "inference:health",
        "ws:{*}:connections",
        "ws:conn:*",
    )


@pytest.mark.parametrize(
    "keys",
    [
        RedisKeys(),
        RedisKeys(prediction_key="btcusdt:prediction"),  # one symbol, no {symbol}
        RedisKeys(features_prefix="feat", prediction_key="out:{symbol}:latest"),
    ],
)
def test_every_key_of_the_schema_matches_a_pattern(keys: RedisKeys) -> None:
    patterns = [_glob(p) for p in keys.acl_key_patterns()]
    p = keys.predictions("BTCUSDT")
    every_key = [
        keys.features_latest("BTCUSDT"),
        keys.features_history("ETHUSDT"),
        keys.features_fallback("BTCUSDT"),
        keys.engine_state("BTCUSDT"),
        keys.checkpoint("BTCUSDT", "shardId-000000000002"),
        p.latest,
        p.history,
        p.pending,
        p.scored,
        keys.lease,
        keys.health,
        keys.connections("BTCUSDT"),
        keys.connection("L0SM9cOFvHcCIhw="),
    ]

    assert [k for k in every_key if not any(g.fullmatch(k) for g in patterns)] == []
    for outside in ("features:BTCUSDT:latest", "inference:other", "ws:other", "other:{X}:y"):
        assert not any(g.fullmatch(outside) for g in patterns), outside


def test_the_access_string_stays_inside_elasticaches_syntax() -> None:
    tokens = acl_access_string(RedisKeys()).split(" ")
    # no password (>, <, #), reset, nopass, channels (&), %R~/%W~, selectors or -command
    allowed = re.compile(r"~[a-z:{}*]+|-@all|\+[a-z_]+(\|[a-z-]+)?")

    assert tokens[0] == "on"
    assert "-@all" in tokens
    assert [t for t in tokens[1:] if not allowed.fullmatch(t)] == []
    commands = {t[1:] for t in tokens if t.startswith("+")}
    assert commands == {c for _, group in ACL_COMMANDS for c in group}
    assert commands.isdisjoint(ELASTICACHE_RESTRICTED)
    assert {c.removeprefix("cluster|") for c in commands if c.startswith("cluster|")}.isdisjoint(
        RESTRICTED_CLUSTER
    )


@pytest.mark.parametrize(
    "keys",
    [
        RedisKeys(features_prefix="feat*"),
        RedisKeys(state_prefix="a?"),
        RedisKeys(connections_prefix="ws[1]"),
        RedisKeys(inference_prefix="in ference"),
        RedisKeys(prediction_key="p:{symbol}:\\latest"),
        RedisKeys(features_prefix=""),
    ],
)
def test_a_prefix_that_is_not_literal_cannot_make_a_pattern(keys: RedisKeys) -> None:
    with pytest.raises(KeySchemaError):
        acl_access_string(keys)


def _glob(pattern: str) -> re.Pattern[str]:
    """A Redis glob pattern (only ``*`` used here; braces literal) as a regular expression."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))
