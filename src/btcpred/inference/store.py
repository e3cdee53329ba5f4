"""The inference side of Redis: feature reads, prediction writes, handover, health.

Every key comes from :class:`btcpred.keys.RedisKeys` (``{S}`` is the symbol's hash tag):

=================================  ==========================================================
``features:{S}:latest``            read: the aggregator's newest features
``features:{S}:history``           read: the last feature points (sequence models)
``features:{S}:fallback``          read: features the fallback poller derived from REST
``prediction:{S}:latest``          the newest PredictionResult (TTL ``prediction_ttl_s``)
``prediction:{S}:history``         list, newest first, the last ``history_length`` results
``prediction:{S}:scored``          list, newest first, the last scored predictions
``prediction:{S}:pending``         predictions awaiting their horizon, handed to the next
                                   invocation (taken with GETDEL on every active tick)
``inference:health``               the active predictor's health document (TTL
                                   :func:`health_ttl_ms`: three intervals, at least 2 s)
``inference:lease``                who predicts (:mod:`btcpred.inference.lease`)
=================================  ==========================================================

Each tick costs two round trips: one pipeline reads everything, one writes everything. Both
are non-transactional, so on a Redis Cluster the client splits them per node; no request here
touches keys of two hash slots at once. Every method raises
:class:`~btcpred.inference.errors.StoreUnavailableError` (retryable) or
:class:`~btcpred.inference.errors.StoreRejectedError` (permanent), never a driver exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from btcpred.features import FeatureSnapshot
from btcpred.features.snapshot import SnapshotFormatError
from btcpred.inference.accuracy import ScoredPrediction
from btcpred.inference.redisio import redis_errors, translate
from btcpred.inference.result import PredictionResult, ResultFormatError
from btcpred.keys import RedisKeys
from btcpred.redisconn import RedisClient

__all__ = [
    "HEALTH_KEY",
    "LEASE_KEY",
    "InferenceStore",
    "StoredFeatures",
    "health_ttl_ms",
]

HEALTH_KEY = RedisKeys().health
"""The health key under the default prefix (tests and tools; the store uses its own keys)."""
LEASE_KEY = RedisKeys().lease
HEALTH_TTL_MIN_MS = 2_000
PENDING_TTL_S = 600
_PENDING = msgspec.json.Decoder(list[PredictionResult])
_SCORED = msgspec.json.Encoder()


def health_ttl_ms(interval_s: float) -> int:
    """TTL of the health document: three intervals (what ``/health`` calls recent), >= 2 s.

    So the document outlives the gap between two active ticks at every allowed interval
    (0.05 - 30 s), and a dead predictor's document is gone three intervals later.
    """
    return max(HEALTH_TTL_MIN_MS, round(3 * interval_s * 1000))


@dataclass(frozen=True, slots=True)
class StoredFeatures:
    """What Redis holds for one symbol at one tick."""

    latest: FeatureSnapshot | None
    fallback: FeatureSnapshot | None
    history: list[FeatureSnapshot]
    pending: list[PredictionResult]
    bad_documents: int = 0
    """Documents that did not parse (counted, then treated as absent)."""


def _snapshot(raw: object) -> tuple[FeatureSnapshot | None, int]:
    if raw is None:
        return None, 0
    if not isinstance(raw, bytes | str):  # an error reply for this key (e.g. WRONGTYPE)
        return None, 1
    try:
        return FeatureSnapshot.from_json(raw), 0
    except SnapshotFormatError:
        return None, 1


def _replies(replies: list[Any], what: str) -> list[Any]:
    """Per-command replies; a retryable error in any of them fails the whole read."""
    for reply in replies:
        if isinstance(reply, BaseException):
            typed = translate(reply, what)
            if typed is not None and typed.retryable:
                raise typed from reply
    return replies


class InferenceStore:
    """Reads and writes the keys above (see the module docstring for the errors).

    Parameters
    ----------
    client
        A client from :func:`btcpred.redisconn.connect` (single node or cluster; a cluster
        client connects on first use, so a store can exist while Redis is down).
    keys
        The key schema (prefixes and the prediction key template).
    health_ttl_ms
        TTL of the health document (:func:`health_ttl_ms` of the interval).
    """

    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys | None = None,
        *,
        history_length: int = 100,
        prediction_ttl_s: int = 30,
        health_ttl_ms: int = 10_000,
    ) -> None:
        self.client = client
        self.schema = keys if keys is not None else RedisKeys()
        self.keys = self.schema.predictions
        self.history_length = history_length
        self.prediction_ttl_s = prediction_ttl_s
        self.health_ttl_ms = health_ttl_ms

    def read(
        self, symbols: Sequence[str], history_points: int, *, take_pending: bool
    ) -> dict[str, StoredFeatures]:
        """One pipeline: latest, fallback, history (and pending, taken) of every symbol.

        A key whose reply is an error (a wrong type) counts as a bad document; the others are
        still read.
        """
        k = self.schema
        with redis_errors("feature read"):
            pipe = self.client.pipeline(transaction=False)
            for s in symbols:
                pipe.get(k.features_latest(s))
                pipe.get(k.features_fallback(s))
                if history_points > 0:
                    pipe.lrange(k.features_history(s), 0, history_points - 1)
                if take_pending:
                    pipe.getdel(self.keys(s).pending)
            raw = pipe.execute(raise_on_error=False)
        replies = iter(_replies(raw, "feature read"))
        return {s: self._stored(replies, history_points, take_pending) for s in symbols}

    @staticmethod
    def _stored(replies: Any, history_points: int, take_pending: bool) -> StoredFeatures:
        latest, bad_l = _snapshot(next(replies))
        fallback, bad_f = _snapshot(next(replies))
        bad = bad_l + bad_f
        history: list[FeatureSnapshot] = []
        raw_history = next(replies) if history_points > 0 else []
        if not isinstance(raw_history, list):
            raw_history, bad = [], bad + 1
        for item in raw_history:
            snap, b = _snapshot(item)
            bad += b
            if snap is not None:
                history.append(snap)
        pending: list[PredictionResult] = []
        raw_pending = next(replies) if take_pending else None
        if raw_pending is not None:
            try:
                pending = _PENDING.decode(raw_pending)
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                bad += 1
        return StoredFeatures(latest, fallback, history, pending, bad)

    def write(
        self,
        results: Sequence[PredictionResult],
        scored: Sequence[ScoredPrediction],
        health: dict[str, Any] | None,
    ) -> None:
        """One pipeline: each result as latest and onto history, scored ones, health."""
        with redis_errors("prediction write"):
            pipe = self.client.pipeline(transaction=False)
            for r in results:
                keys = self.keys(r.symbol)
                doc = r.to_json()
                pipe.set(keys.latest, doc, ex=self.prediction_ttl_s)
                pipe.lpush(keys.history, doc)
                pipe.ltrim(keys.history, 0, self.history_length - 1)
            for s in scored:
                keys = self.keys(s.prediction.symbol)
                pipe.lpush(keys.scored, _SCORED.encode(s))
                pipe.ltrim(keys.scored, 0, self.history_length - 1)
            if health is not None:
                pipe.set(self.schema.health, orjson.dumps(health), px=self.health_ttl_ms)
            if len(pipe):
                pipe.execute()

    def save_pending(self, symbol: str, results: Sequence[PredictionResult]) -> None:
        """Hand waiting predictions to the next invocation (merged with any already there)."""
        key = self.keys(symbol).pending
        with redis_errors("pending handover"):
            raw = self.client.getdel(key)
            merged = list(results)
            if isinstance(raw, bytes | str):
                # unreadable: replaced by ours rather than kept forever
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    merged = _PENDING.decode(raw) + merged
            if merged:
                self.client.set(key, msgspec.json.encode(merged), ex=PENDING_TTL_S)

    def latest_prediction(self, symbol: str) -> PredictionResult | None:
        """The newest prediction of ``symbol`` (None when none is fresh or it is unreadable)."""
        with redis_errors("prediction read"):
            raw = self.client.get(self.keys(symbol).latest)
        if not isinstance(raw, bytes | str):
            return None
        try:
            return PredictionResult.from_json(raw)
        except ResultFormatError:
            return None

    def health(self) -> dict[str, Any] | None:
        """The active predictor's last health document."""
        with redis_errors("health read"):
            raw = self.client.get(self.schema.health)
        if not isinstance(raw, bytes | str):
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None
