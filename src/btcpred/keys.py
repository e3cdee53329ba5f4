"""The Redis key schema: every key any btcpred process reads or writes is built here.

Keys that belong to one symbol carry the symbol as a Redis Cluster hash tag (``{BTCUSDT}``), so
that everything one transaction, Lua script or pipeline of a symbol touches lives in one hash
slot (ElastiCache Serverless and cluster-mode replication groups are Redis Clusters: a
``MULTI``/``EXEC`` over keys of two slots fails with ``CROSSSLOT``). Prefixes are configurable;
the defaults give:

=========================================  =====================================================
``features:{S}:latest``                    the aggregator's newest features (JSON, TTL)
``features:{S}:history``                   list, newest first, the last feature points
``features:{S}:fallback``                  fallback features from REST (the poller)
``aggregator:{S}:state``                   the symbol's engine state (MessagePack, TTL)
``aggregator:{S}:seq:{shard}``             last applied sequence number of (shard, symbol)
``prediction:{S}:latest``                  the newest PredictionResult (``REDIS_PREDICTION_KEY``)
``prediction:{S}:history|pending|scored``  derived from the latest key
``inference:lease`` / ``inference:health`` the active predictor's lease and health document
``ws:{S}:connections``                     sorted set of the symbol's WebSocket connections
``ws:conn:{id}``                           the symbol one connection is subscribed to
=========================================  =====================================================

``{S}`` is written literally with braces: ``features:{BTCUSDT}:latest``. The partition key of a
Kinesis record is its symbol, so (shard, partition key) checkpoints share the symbol's slot.

The same schema gives the app user's least-privilege ACL (ElastiCache RBAC access string):
:meth:`RedisKeys.acl_key_patterns` and :func:`acl_access_string`; see ``docs/architecture.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ACL_COMMANDS",
    "DEFAULT_PREDICTION_KEY",
    "SYMBOL_PLACEHOLDER",
    "KeySchemaError",
    "PredictionKeys",
    "RedisKeys",
    "acl_access_string",
    "hash_tag",
]

SYMBOL_PLACEHOLDER: Final = "{symbol}"
DEFAULT_PREDICTION_KEY: Final = "prediction:{symbol}:latest"
"""``REDIS_PREDICTION_KEY``'s default (the seed's name)."""
_SYMBOL: Final = re.compile(r"[A-Z0-9]{1,20}")
_ANY_TAG: Final = "{*}"
"""Any symbol's hash tag, in an ACL key pattern (braces are literal in Redis glob patterns)."""
_NOT_LITERAL: Final = re.compile(r"[*?\[\]\\\s]")
"""Glob metacharacters and whitespace: a prefix holding one cannot go into an access string."""

ACL_COMMANDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    # redis-py's RedisCluster at start-up: COMMAND (its table of key positions) and CLUSTER
    # SLOTS (the slot map). AUTH and HELLO need no permission; CLIENT SETINFO is not sent.
    ("cluster client", ("command", "cluster|slots")),
    # features, state, checkpoints, predictions, the lease value, health, a connection's symbol
    ("strings", ("get", "set", "mget", "getdel")),
    ("keys", ("del", "expire", "type")),  # TYPE: the aggregator's commit script
    ("lists", ("lpush", "ltrim", "lrange")),  # feature, prediction and scored histories
    ("sorted sets", ("zadd", "zrem", "zrangebyscore", "zremrangebyscore")),  # ws:{S}:connections
    # the aggregator's commit and the lease: redis-py's Script sends EVALSHA, and SCRIPT LOAD
    # when the server does not know the script yet; the scripts' own calls are checked
    # against the same permissions
    ("scripting", ("evalsha", "script|load")),
)
"""Every command the four functions send, by what it is for; the access string allows these
and nothing else. Each one is needed: without any of them a test of
tests/integration/test_redis_auth.py fails (PING, CLUSTER SHARDS/NODES are not sent)."""


class KeySchemaError(ValueError):
    """A key part (symbol, shard, connection id) that cannot be part of a key."""


def hash_tag(symbol: str) -> str:
    """``{SYMBOL}``: the hash tag that puts every key of ``symbol`` into one cluster slot.

    Raises
    ------
    KeySchemaError
        ``symbol`` is not 1-20 upper-case letters or digits (a brace would break the tag).
    """
    if not _SYMBOL.fullmatch(symbol):
        raise KeySchemaError(f"not a symbol for a Redis key: {symbol!r}")
    return "{" + symbol + "}"


@dataclass(frozen=True, slots=True)
class PredictionKeys:
    """Redis keys of one symbol's predictions."""

    latest: str
    history: str
    pending: str
    scored: str


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names; the prefixes (and the prediction key template) come from configuration."""

    features_prefix: str = "features"
    state_prefix: str = "aggregator"
    prediction_key: str = DEFAULT_PREDICTION_KEY
    """``REDIS_PREDICTION_KEY``; ``{symbol}`` becomes the symbol's hash tag."""
    inference_prefix: str = "inference"
    connections_prefix: str = "ws"

    # -- features (written by the aggregator and the poller, read by inference) --
    def features_latest(self, symbol: str) -> str:
        """``features:{S}:latest``."""
        return f"{self.features_prefix}:{hash_tag(symbol)}:latest"

    def features_history(self, symbol: str) -> str:
        """``features:{S}:history``."""
        return f"{self.features_prefix}:{hash_tag(symbol)}:history"

    def features_fallback(self, symbol: str) -> str:
        """``features:{S}:fallback``."""
        return f"{self.features_prefix}:{hash_tag(symbol)}:fallback"

    # -- the aggregator's own state --
    def engine_state(self, symbol: str) -> str:
        """``aggregator:{S}:state``."""
        return f"{self.state_prefix}:{hash_tag(symbol)}:state"

    def checkpoint(self, symbol: str, shard_id: str) -> str:
        """``aggregator:{S}:seq:{shard}``: the (shard, partition key) checkpoint.

        Raises
        ------
        KeySchemaError
            ``shard_id`` holds a brace or whitespace.
        """
        if not shard_id or any(c in shard_id for c in "{} \t\r\n"):
            raise KeySchemaError(f"not a shard id for a Redis key: {shard_id!r}")
        return f"{self.state_prefix}:{hash_tag(symbol)}:seq:{shard_id}"

    # -- predictions --
    def predictions(self, symbol: str) -> PredictionKeys:
        """The keys of ``symbol``'s predictions (history, pending, scored beside latest)."""
        latest = self.prediction_key.replace(SYMBOL_PLACEHOLDER, hash_tag(symbol))
        base = latest.removesuffix(":latest")
        return PredictionKeys(
            latest=latest,
            history=f"{base}:history",
            pending=f"{base}:pending",
            scored=f"{base}:scored",
        )

    @property
    def lease(self) -> str:
        """``inference:lease``: who predicts."""
        return f"{self.inference_prefix}:lease"

    @property
    def health(self) -> str:
        """``inference:health``: the active predictor's health document."""
        return f"{self.inference_prefix}:health"

    # -- WebSocket connections --
    def connections(self, symbol: str) -> str:
        """``ws:{S}:connections``."""
        return f"{self.connections_prefix}:{hash_tag(symbol)}:connections"

    def connection(self, connection_id: str) -> str:
        """``ws:conn:{id}``."""
        return f"{self.connections_prefix}:conn:{connection_id}"

    # -- least privilege --
    def acl_key_patterns(self) -> tuple[str, ...]:
        """Redis glob patterns, one per key family, that match every key above.

        ``features:{*}:*``, ``aggregator:{*}:*``, ``prediction:{*}:*`` (from the prediction
        key template), ``inference:lease``, ``inference:health``, ``ws:{*}:connections`` and
        ``ws:conn:*`` under the default prefixes. ``{`` and ``}`` are literal in Redis
        patterns, so a ``{*}`` part matches a hash tag only: a key that merely starts with a
        prefix (``features:x``, ``inference:x``) does not match.

        Raises
        ------
        KeySchemaError
            A prefix (or the prediction key template) holds a glob metacharacter
            (``*?[]\\``) or whitespace, which would widen a pattern or split the access string.
        """
        for part in (
            self.features_prefix,
            self.state_prefix,
            self.inference_prefix,
            self.connections_prefix,
            self.prediction_key,
        ):
            if not part or _NOT_LITERAL.search(part):
                raise KeySchemaError(f"not a literal key prefix for an ACL pattern: {part!r}")
        latest = self.prediction_key.replace(SYMBOL_PLACEHOLDER, _ANY_TAG)
        base = latest.removesuffix(":latest")
        predictions = (f"{base}:*",) if base != latest else (latest, f"{latest}:*")
        return (
            f"{self.features_prefix}:{_ANY_TAG}:*",
            f"{self.state_prefix}:{_ANY_TAG}:*",
            *predictions,
            self.lease,
            self.health,
            f"{self.connections_prefix}:{_ANY_TAG}:connections",
            f"{self.connections_prefix}:conn:*",
        )


def acl_access_string(keys: RedisKeys) -> str:
    """The app user's ElastiCache RBAC access string: ``on``, the key patterns, the commands.

    ``on ~<pattern>… -@all +<command>…``: an enabled user that may touch only the keys of
    :meth:`RedisKeys.acl_key_patterns` and run only :data:`ACL_COMMANDS`. It stays inside the
    syntax ElastiCache accepts (no password, ``reset``, ``nopass`` or channel rules; no
    ``-command``, because naming a command ElastiCache restricts, such as ``CONFIG`` or
    ``KEYS`` on Serverless, is rejected; so everything else is refused by ``-@all``). The
    ``command|subcommand`` form needs Valkey 7.2+ or Redis OSS 7.0+.

    Raises
    ------
    KeySchemaError
        See :meth:`RedisKeys.acl_key_patterns`.
    """
    commands = [c for _, group in ACL_COMMANDS for c in group]
    patterns = [f"~{p}" for p in dict.fromkeys(keys.acl_key_patterns())]
    return " ".join(["on", *patterns, "-@all", *(f"+{c}" for c in commands)])
