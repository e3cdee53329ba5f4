"""The inference side of Redis: feature reads, prediction writes, handover, health.

=================================  ==========================================================
``features:{S}:latest``            read: the aggregator's newest features
``features:{S}:history``           read: the last feature points (sequence models)
``features:{S}:fallback``          read: features the fallback poller derived from REST
``prediction:{S}:latest``          the newest PredictionResult (TTL ``prediction_ttl_s``)
``prediction:{S}:history``         list, newest first, the last ``history_length`` results
``prediction:{S}:scored``          list, newest first, the last scored predictions
``prediction:{S}:pending``         predictions awaiting their horizon, handed to the next
                                   invocation (taken with GETDEL on every active tick)
``inference:health``               the active predictor's health document (TTL 10 s)
``inference:lease``                who predicts (:mod:`btcpred.inference.lease`)
=================================  ==========================================================

Each tick costs two round trips: one pipeline reads everything, one writes everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from btcpred.features import FeatureSnapshot
from btcpred.features.snapshot import SnapshotFormatError
from btcpred.inference.accuracy import ScoredPrediction
from btcpred.inference.result import PredictionResult, ResultFormatError
from btcpred.keys import PredictionKeys
from btcpred.redisconn import RedisClient

__all__ = ["HEALTH_KEY", "LEASE_KEY", "InferenceStore", "StoredFeatures"]

HEALTH_KEY = "inference:health"
LEASE_KEY = "inference:lease"
HEALTH_TTL_S = 10
PENDING_TTL_S = 600
_PENDING = msgspec.json.Decoder(list[PredictionResult])
_SCORED = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class StoredFeatures:
    """What Redis holds for one symbol at one tick."""

    latest: FeatureSnapshot | None
    fallback: FeatureSnapshot | None
    history: list[FeatureSnapshot]
    pending: list[PredictionResult]
    bad_documents: int = 0
    """Documents that did not parse (counted, then treated as absent)."""


def _snapshot(raw: bytes | None) -> tuple[FeatureSnapshot | None, int]:
    if raw is None:
        return None, 0
    try:
        return FeatureSnapshot.from_json(raw), 0
    except SnapshotFormatError:
        return None, 1


class InferenceStore:
    """Reads and writes the keys above; every method raises ``redis.RedisError`` when down."""

    def __init__(
        self,
        client: RedisClient,
        keys: Callable[[str], PredictionKeys],
        *,
        features_prefix: str = "features",
        history_length: int = 100,
        prediction_ttl_s: int = 30,
    ) -> None:
        self.client = client
        self.keys = keys
        self.features_prefix = features_prefix
        self.history_length = history_length
        self.prediction_ttl_s = prediction_ttl_s

    def read(
        self, symbols: Sequence[str], history_points: int, *, take_pending: bool
    ) -> dict[str, StoredFeatures]:
        """One pipeline: latest, fallback, history (and pending, taken) of every symbol."""
        pipe = self.client.pipeline(transaction=False)
        fp = self.features_prefix
        for s in symbols:
            pipe.get(f"{fp}:{s}:latest")
            pipe.get(f"{fp}:{s}:fallback")
            if history_points > 0:
                pipe.lrange(f"{fp}:{s}:history", 0, history_points - 1)
            if take_pending:
                pipe.getdel(self.keys(s).pending)
        replies = iter(pipe.execute())
        out: dict[str, StoredFeatures] = {}
        for s in symbols:
            latest, bad_l = _snapshot(next(replies))
            fallback, bad_f = _snapshot(next(replies))
            bad = bad_l + bad_f
            history: list[FeatureSnapshot] = []
            for raw in next(replies) if history_points > 0 else ():
                snap, b = _snapshot(raw)
                bad += b
                if snap is not None:
                    history.append(snap)
            pending: list[PredictionResult] = []
            raw_pending = next(replies) if take_pending else None
            if raw_pending is not None:
                try:
                    pending = _PENDING.decode(raw_pending)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    bad += 1
            out[s] = StoredFeatures(latest, fallback, history, pending, bad)
        return out

    def write(
        self,
        results: Sequence[PredictionResult],
        scored: Sequence[ScoredPrediction],
        health: dict[str, Any] | None,
    ) -> None:
        """One pipeline: each result as latest and onto history, scored ones, health."""
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
            pipe.set(HEALTH_KEY, orjson.dumps(health), ex=HEALTH_TTL_S)
        if len(pipe):
            pipe.execute()

    def save_pending(self, symbol: str, results: Sequence[PredictionResult]) -> None:
        """Hand waiting predictions to the next invocation (merged with any already there)."""
        key = self.keys(symbol).pending
        raw = self.client.getdel(key)
        merged = list(results)
        if raw is not None:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                merged = _PENDING.decode(raw) + merged
        if merged:
            self.client.set(key, msgspec.json.encode(merged), ex=PENDING_TTL_S)

    def latest_prediction(self, symbol: str) -> PredictionResult | None:
        """The newest prediction of ``symbol`` (None when none is fresh or it is unreadable)."""
        raw = self.client.get(self.keys(symbol).latest)
        if raw is None:
            return None
        try:
            return PredictionResult.from_json(raw)
        except ResultFormatError:
            return None

    def health(self) -> dict[str, Any] | None:
        """The active predictor's last health document."""
        raw = self.client.get(HEALTH_KEY)
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None
