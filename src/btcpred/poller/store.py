"""The poller's side of Redis: write ``features:{S}:fallback``, read ``features:{S}:latest``.

One non-transactional pipeline per poll: ``SET features:{S}:fallback <doc> EX ttl`` and
``GET features:{S}:latest``. Both keys carry the symbol's hash tag, so on a Redis Cluster the
pipeline goes to one node. The value is the features document the inference function parses
(:meth:`btcpred.features.FeatureSnapshot.to_document`: the seed's schema, ``schema_version``,
``warm``) plus ``"source": "fallback"``, which the reader ignores and a person reading the key
appreciates.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis
from redis.exceptions import RedisClusterException

from btcpred.features import FeatureSnapshot, SnapshotFormatError
from btcpred.keys import RedisKeys
from btcpred.redisconn import RedisClient

__all__ = ["FallbackStore", "FallbackStoreError", "fallback_document"]

log = logging.getLogger("btcpred.poller")


class FallbackStoreError(Exception):
    """Redis did not take the write (unreachable, timed out, or refused the command)."""


def fallback_document(snapshot: FeatureSnapshot) -> bytes:
    """The ``features:{S}:fallback`` value: the features document with ``source: fallback``."""
    doc: dict[str, Any] = snapshot.to_document()
    doc["source"] = "fallback"
    return orjson.dumps(doc)


class FallbackStore:
    """Writes fallback features with a TTL and reads the stream's latest features.

    Parameters
    ----------
    client
        A client from :func:`btcpred.redisconn.connect` (single node or cluster).
    keys
        The key schema (the features prefix).
    ttl_s
        TTL of ``features:{S}:fallback``: when the poller stops, the key disappears this long
        after its last write, so a dead poller reads as absent, never as fresh.
    """

    def __init__(self, client: RedisClient, keys: RedisKeys | None = None, *, ttl_s: int) -> None:
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least 1 second")
        self.client = client
        self.keys = keys if keys is not None else RedisKeys()
        self.ttl_s = ttl_s

    def write(self, snapshot: FeatureSnapshot) -> FeatureSnapshot | None:
        """Write ``snapshot`` as the symbol's fallback; return the stream's latest features.

        ``None`` when there are no stream features (or they do not parse: logged).

        Raises
        ------
        FallbackStoreError
            Redis is unreachable, timed out or refused the write.
        """
        symbol = snapshot.symbol
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(
                self.keys.features_fallback(symbol), fallback_document(snapshot), ex=self.ttl_s
            )
            pipe.get(self.keys.features_latest(symbol))
            _, raw = pipe.execute()
        except (redis.RedisError, RedisClusterException) as exc:
            raise FallbackStoreError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(raw, bytes | str):
            return None
        try:
            return FeatureSnapshot.from_json(raw)
        except SnapshotFormatError as exc:
            log.warning("%s: unreadable stream features (%s)", symbol, exc)
            return None
