"""Inference core pieces on their own: trend fallback, ticker features, accuracy, the result
document, the predictor's validation (shipped model) and the inference settings."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis

from btcpred.features import FeatureSnapshot
from btcpred.inference import service as inference_service
from btcpred.inference.accuracy import AccuracyTracker
from btcpred.inference.errors import StoreRejectedError, StoreUnavailableError
from btcpred.inference.fallback import generate_fallback_features, linear_trend
from btcpred.inference.predictor import NoPriceError, Predictor, PredictOutcome, TickInput
from btcpred.inference.redisio import translate
from btcpred.inference.reload import ModelSource
from btcpred.inference.result import PredictionResult, ResultFormatError
from btcpred.model import OnnxModel
from btcpred.settings import ConfigError, InferenceSettings
from btcpred.sources.binance_rest import Ticker24hr
from tests.samples import COMPLETE_FEATURES

MODELS = Path(__file__).resolve().parents[2] / "models"
T0 = 1_723_161_600_000  # 2024-08-09T00:00:00Z


# -- linear_trend ------------------------------------------------------------------------------
def test_linear_trend_extrapolates_the_exact_slope_from_the_last_point() -> None:
    points = [(T0, 100.0), (T0 + 1000, 101.0), (T0 + 2000, 102.0)]  # +1 per second

    assert linear_trend(points, 60_000) == 162.0


def test_linear_trend_is_the_least_squares_slope_on_noisy_points() -> None:
    times = [0, 1500, 3000, 4500, 6000, 7500]
    prices = [100.0, 100.9, 101.2, 102.5, 102.4, 103.9]
    points = [(T0 + t, p) for t, p in zip(times, prices, strict=True)]
    slope_per_s = np.polyfit([t / 1000 for t in times], prices, 1)[0]

    assert linear_trend(points, 30_000) == pytest.approx(103.9 + slope_per_s * 30)


@pytest.mark.parametrize(
    "points",
    [
        [(T0, 123.5)],
        [(T0, 100.0), (T0, 123.5)],  # two points at one time: no slope
    ],
)
def test_linear_trend_without_two_distinct_times_is_the_last_price(
    points: list[tuple[int, float]],
) -> None:
    assert linear_trend(points, 60_000) == 123.5


def test_linear_trend_never_extrapolates_below_zero() -> None:
    points = [(T0, 10.0), (T0 + 1000, 5.0)]  # -5 per second: 60 s ahead is negative

    assert linear_trend(points, 60_000) == 5.0


def test_linear_trend_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one price"):
        linear_trend([], 60_000)


# -- generate_fallback_features ----------------------------------------------------------------
def ticker(**overrides: float | int | str) -> Ticker24hr:
    fields: dict[str, float | int | str] = {
        "symbol": "BTCUSDT",
        "last_price": 60_000.0,
        "bid_price": 59_999.0,
        "bid_qty": 2.0,
        "ask_price": 60_001.0,
        "ask_qty": 1.0,
        "volume": 14_400.0,
        "quote_volume": 864_000_000.0,
        "weighted_avg_price": 59_800.0,
        "price_change_percent": 2.88,
        "open_price": 58_320.0,
        "high_price": 60_500.0,
        "low_price": 58_000.0,
        "open_time_ms": T0 - 86_400_000,
        "close_time_ms": T0,
        "count": 172_800,
    }
    fields.update(overrides)
    return Ticker24hr(**fields)  # type: ignore[arg-type]


def test_fallback_features_from_the_24hr_ticker_are_the_seeds_values() -> None:
    snap = generate_fallback_features(ticker(), T0 + 5)

    bid_notional, ask_notional = 59_999.0 * 2.0, 60_001.0 * 1.0
    assert (snap.symbol, snap.timestamp) == ("BTCUSDT", T0 + 5)
    assert snap.price == 60_000.0
    assert snap.volume == 14_400.0 / 1440
    assert snap.volume_avg_1m == 14_400.0 / 1440
    assert snap.vwap == 59_800.0
    assert snap.trade_intensity == 172_800 / 86_400
    assert snap.bid_ask_spread == (60_001.0 - 59_999.0) / 59_999.0
    assert snap.order_book_imbalance == (bid_notional - ask_notional) / (
        bid_notional + ask_notional
    )
    assert snap.price_change_5m == pytest.approx(0.0288 / 288)
    assert snap.price_change_1m == 0.0
    assert snap.rsi_5m == 50.0
    assert snap.macd_signal == 0.0
    assert snap.bollinger_position == 0.5


def test_fallback_features_without_book_quantities_are_balanced_and_without_bid_no_spread() -> None:
    snap = generate_fallback_features(ticker(bid_qty=0.0, ask_qty=0.0, bid_price=0.0), T0)

    assert snap.order_book_imbalance == 0.0
    assert snap.bid_ask_spread is None
    assert snap.price == 60_000.0


def test_fallback_features_without_a_weighted_average_use_the_last_price_as_vwap() -> None:
    assert generate_fallback_features(ticker(weighted_avg_price=0.0), T0).vwap == 60_000.0


def test_fallback_features_need_a_positive_last_price() -> None:
    with pytest.raises(ValueError, match="BTCUSDT"):
        generate_fallback_features(ticker(last_price=0.0), T0)


# -- AccuracyTracker ---------------------------------------------------------------------------
def result(
    *,
    timestamp: int = T0,
    current: float = 100.0,
    predicted: float = 101.0,
    age_ms: int = 0,
    symbol: str = "BTCUSDT",
    confidence: float = 0.7,
) -> PredictionResult:
    return PredictionResult(
        symbol=symbol,
        timestamp=timestamp,
        current_price=current,
        predicted_price=predicted,
        prediction_horizon_seconds=60,
        confidence=confidence,
        model_version="btcpred-mlp/1.0.0",
        features_age_ms=age_ms,
        inference_latency_ms=1.25,
        source="redis",
    )


def test_a_prediction_is_scored_by_the_first_price_at_or_after_its_target_time() -> None:
    tracker = AccuracyTracker()
    p = result(timestamp=T0 + 300, age_ms=300, current=100.0, predicted=101.0)  # target T0+60s
    tracker.add(p)

    early = tracker.observe("BTCUSDT", T0 + 59_999, 150.0)
    on_time = tracker.observe("BTCUSDT", T0 + 60_000, 102.5)

    assert (early.scored, early.unscorable) == ([], 0)
    assert len(on_time.scored) == 1
    s = on_time.scored[0]
    assert s.prediction == p
    assert (s.realized_price, s.realized_time_ms) == (102.5, T0 + 60_000)
    assert s.abs_error == 1.5
    assert s.naive_abs_error == 2.5
    assert s.direction_hit is True
    assert tracker.depth == 0


def test_a_prediction_from_older_features_is_scored_at_its_own_target_time() -> None:
    """REST features stamped now, then stream features 4.5 s old: targets arrive out of order."""
    tracker = AccuracyTracker()
    first = result(timestamp=T0, age_ms=0)  # target T0 + 60 s
    second = result(timestamp=T0 + 1_500, age_ms=4_500)  # target T0 + 57 s
    tracker.add(first)
    tracker.add(second)

    at_57 = tracker.observe("BTCUSDT", T0 + 57_000, 99.0)
    at_60 = tracker.observe("BTCUSDT", T0 + 60_000, 103.0)

    assert [s.prediction for s in at_57.scored] == [second]
    assert at_57.scored[0].realized_price == 99.0
    assert [s.prediction for s in at_60.scored] == [first]


def test_observations_of_another_symbol_score_nothing() -> None:
    tracker = AccuracyTracker()
    tracker.add(result())

    report = tracker.observe("ETHUSDT", T0 + 60_000, 101.0)

    assert report.scored == []
    assert tracker.depth == 1


@pytest.mark.parametrize(
    ("predicted", "realized", "hit"),
    [
        (101.0, 100.5, True),  # both up
        (99.0, 99.5, True),  # both down
        (101.0, 99.0, False),  # up, went down
        (99.0, 101.0, False),  # down, went up
        (100.0, 100.0, True),  # no move predicted, none happened
        (100.0, 100.1, False),  # no move predicted, it went up
        (100.1, 100.0, False),  # up predicted, no move happened
    ],
)
def test_direction_hit_compares_the_signs_of_the_moves_zero_included(
    predicted: float, realized: float, hit: bool
) -> None:
    tracker = AccuracyTracker()
    tracker.add(result(current=100.0, predicted=predicted))

    (scored,) = tracker.observe("BTCUSDT", T0 + 60_000, realized).scored

    assert scored.direction_hit is hit


def test_an_observation_more_than_max_lag_late_makes_the_prediction_unscorable() -> None:
    tracker = AccuracyTracker(max_lag_ms=5_000)
    tracker.add(result(timestamp=T0))  # target T0 + 60 s
    tracker.add(result(timestamp=T0 + 10_000))  # target T0 + 70 s

    report = tracker.observe("BTCUSDT", T0 + 70_000, 101.0)  # 10 s late for the first

    assert report.unscorable == 1
    assert [s.prediction.timestamp for s in report.scored] == [T0 + 10_000]
    assert tracker.depth == 0


def test_exactly_max_lag_late_is_still_scored() -> None:
    tracker = AccuracyTracker(max_lag_ms=5_000)
    tracker.add(result(timestamp=T0))

    report = tracker.observe("BTCUSDT", T0 + 65_000, 101.0)

    assert (len(report.scored), report.unscorable) == (1, 0)


def test_restore_merges_handed_over_predictions_in_target_time_order() -> None:
    tracker = AccuracyTracker()
    tracker.add(result(timestamp=T0 + 1_000))
    tracker.add(result(timestamp=T0 + 3_000))

    tracker.restore(
        [
            result(timestamp=T0 + 2_000),
            result(timestamp=T0 + 500),
            result(timestamp=T0 + 4_000),
            result(timestamp=T0 + 700, symbol="ETHUSDT"),
        ]
    )

    assert [p.timestamp - T0 for p in tracker.pending("BTCUSDT")] == [
        500,
        1_000,
        2_000,
        3_000,
        4_000,
    ]
    assert [p.timestamp - T0 for p in tracker.pending("ETHUSDT")] == [700]
    assert tracker.depth == 6
    scored = tracker.observe("BTCUSDT", T0 + 62_000, 101.0).scored
    assert [s.prediction.timestamp - T0 for s in scored] == [500, 1_000, 2_000]


def test_drain_hands_over_and_forgets_the_symbols_waiting_predictions() -> None:
    tracker = AccuracyTracker()
    first, second = result(timestamp=T0), result(timestamp=T0 + 1_500)
    other = result(symbol="ETHUSDT")
    for p in (first, second, other):
        tracker.add(p)

    drained = tracker.drain("BTCUSDT")

    assert drained == [first, second]
    assert tracker.pending("BTCUSDT") == []
    assert tracker.drain("BTCUSDT") == []
    assert tracker.pending("ETHUSDT") == [other]
    assert tracker.depth == 1


def test_a_full_queue_drops_its_oldest_predictions() -> None:
    tracker = AccuracyTracker(max_pending=2)

    dropped = [tracker.add(result(timestamp=T0 + i)) for i in range(3)]

    assert dropped == [0, 0, 1]
    assert [p.timestamp - T0 for p in tracker.pending("BTCUSDT")] == [1, 2]


# -- PredictionResult --------------------------------------------------------------------------
SEED_FIELDS = [
    "symbol",
    "timestamp",
    "current_price",
    "predicted_price",
    "prediction_horizon_seconds",
    "confidence",
    "model_version",
    "features_age_ms",
    "inference_latency_ms",
    "source",
]


def test_prediction_result_json_has_exactly_the_seeds_fields_in_order() -> None:
    p = result(timestamp=T0 + 1234, age_ms=234)

    doc = json.loads(p.to_json())

    assert list(doc) == SEED_FIELDS
    assert doc == {
        "symbol": "BTCUSDT",
        "timestamp": T0 + 1234,
        "current_price": 100.0,
        "predicted_price": 101.0,
        "prediction_horizon_seconds": 60,
        "confidence": 0.7,
        "model_version": "btcpred-mlp/1.0.0",
        "features_age_ms": 234,
        "inference_latency_ms": 1.25,
        "source": "redis",
    }


def test_prediction_result_round_trips_through_json() -> None:
    p = PredictionResult(
        symbol="ETHUSDT",
        timestamp=T0 + 7,
        current_price=2_612.345678,
        predicted_price=2_613.000001,
        prediction_horizon_seconds=60,
        confidence=0.123456789,
        model_version="btcpred-mlp/9.9.9",
        features_age_ms=1_007,
        inference_latency_ms=0.000123,
        source="fallback",
    )

    assert PredictionResult.from_json(p.to_json()) == p
    assert PredictionResult.from_json(p.to_json().decode()) == p
    assert p.features_time_ms == T0 + 7 - 1_007
    assert p.target_time_ms == T0 + 7 - 1_007 + 60_000


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b'{"symbol": "BTCUSDT"}',
        result().to_json().replace(b'"redis"', b'"kafka"'),
    ],
)
def test_a_document_that_is_not_a_prediction_result_is_a_format_error(doc: bytes) -> None:
    with pytest.raises(ResultFormatError):
        PredictionResult.from_json(doc)


# -- Predictor validation with the shipped model ---------------------------------------------
@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return ModelSource(str(MODELS), "btcpred-mlp").load()


def snap(ts: int, **changes: float | None) -> FeatureSnapshot:
    return FeatureSnapshot.build("BTCUSDT", ts, {**COMPLETE_FEATURES, **changes})


def predict_one(predictor: Predictor, snapshot: FeatureSnapshot) -> PredictOutcome:
    (outcome,) = predictor.predict(
        [TickInput(snapshot, "redis")], now_ms=snapshot.timestamp + 50, started=0.0
    )
    assert isinstance(outcome, PredictOutcome)
    return outcome


def test_good_features_go_through_the_model(model: OnnxModel) -> None:
    outcome = predict_one(Predictor(model), snap(T0))

    r = outcome.result
    assert (outcome.filled, outcome.implausible, outcome.linear_fallback) == ((), (), False)
    assert r.current_price == 60_000.0
    assert math.isfinite(r.predicted_price)
    assert r.predicted_price != r.current_price
    assert 0.0 < r.confidence <= 1.0
    assert (r.model_version, r.features_age_ms, r.prediction_horizon_seconds) == (
        model.version,
        50,
        60,
    )


def test_implausible_rsi_is_treated_as_missing_and_filled_from_the_last_known_value(
    model: OnnxModel,
) -> None:
    predictor = Predictor(model)
    predict_one(predictor, snap(T0))  # rsi 55 becomes the last known value

    bad = predict_one(predictor, snap(T0 + 1_500, rsi_5m=150.0))
    same_inputs = predict_one(Predictor(model), snap(T0 + 1_500))  # rsi 55 given directly

    assert bad.implausible == ("rsi_5m",)
    assert bad.filled == ("rsi_5m",)
    assert bad.linear_fallback is False
    assert bad.result.predicted_price == same_inputs.result.predicted_price
    assert bad.result.confidence == pytest.approx(same_inputs.result.confidence * 0.8)


def test_implausible_value_never_becomes_the_last_known_value(model: OnnxModel) -> None:
    predictor = Predictor(model)
    predict_one(predictor, snap(T0))
    predict_one(predictor, snap(T0 + 1_500, rsi_5m=150.0))

    later = predict_one(predictor, snap(T0 + 3_000, rsi_5m=None))
    reference = predict_one(Predictor(model), snap(T0 + 3_000))

    assert later.filled == ("rsi_5m",)
    assert later.result.predicted_price == reference.result.predicted_price


def test_implausible_value_with_nothing_known_falls_back_to_the_linear_trend(
    model: OnnxModel,
) -> None:
    outcome = predict_one(Predictor(model), snap(T0, rsi_5m=150.0))

    assert outcome.linear_fallback is True
    assert outcome.model_error is not None
    assert "rsi_5m" in outcome.model_error
    assert outcome.result.predicted_price == 60_000.0  # one price: no trend
    assert outcome.result.confidence == pytest.approx(0.3)


def test_nan_is_missing_but_not_implausible(model: OnnxModel) -> None:
    predictor = Predictor(model)
    predict_one(predictor, snap(T0))
    values = {**COMPLETE_FEATURES, "rsi_5m": math.nan}
    raw = FeatureSnapshot(symbol="BTCUSDT", timestamp=T0 + 1_500, **values)  # NaN kept as given

    outcome = predict_one(predictor, raw)
    reference = predict_one(Predictor(model), snap(T0 + 1_500))

    assert outcome.filled == ("rsi_5m",)
    assert outcome.implausible == ()
    assert outcome.linear_fallback is False
    assert outcome.result.predicted_price == reference.result.predicted_price


@pytest.mark.parametrize("price", [None, math.nan, 0.0, -5.0])
def test_a_point_without_a_usable_price_is_a_no_price_error_and_others_still_predict(
    model: OnnxModel, price: float | None
) -> None:
    values = {**COMPLETE_FEATURES, "price": price}
    unusable = FeatureSnapshot(symbol="BTCUSDT", timestamp=T0, **values)
    fine = FeatureSnapshot.build(
        "ETHUSDT", T0, {**COMPLETE_FEATURES, "price": 2_600.0, "vwap": 2_600.0}
    )

    outcomes = Predictor(model).predict(
        [TickInput(unusable, "redis"), TickInput(fine, "redis")], now_ms=T0, started=0.0
    )

    assert isinstance(outcomes[0], NoPriceError)
    assert isinstance(outcomes[1], PredictOutcome)
    assert outcomes[1].result.symbol == "ETHUSDT"
    assert outcomes[1].linear_fallback is False


# -- InferenceSettings -------------------------------------------------------------------------
def test_inference_settings_defaults() -> None:
    s = InferenceSettings.from_env({})

    assert s == InferenceSettings()
    assert s.symbols == ("BTCUSDT",)
    assert (s.interval_s, s.max_feature_age_ms, s.broadcast_budget_ms) == (1.5, 5000, 500)
    assert (s.model_path, s.model_name) == ("models", "btcpred-mlp")
    assert s.prediction_key == "prediction:{symbol}:latest"
    assert s.redis_url == "redis://localhost:6379/0"
    assert (s.websocket_endpoint, s.history_uri) == (None, None)


def test_inference_settings_from_environment_values() -> None:
    s = InferenceSettings.from_env(
        {
            "SYMBOLS": " btcusdt, ethusdt ",
            "PREDICTION_INTERVAL_SECONDS": "0.2",
            "BROADCAST_BUDGET_MS": "150",
            "MODEL_PATH": "s3://bucket/models",
            "WEBSOCKET_ENDPOINT": "https://abc.execute-api.us-east-1.amazonaws.com/prod/",
        }
    )

    assert s.symbols == ("BTCUSDT", "ETHUSDT")
    assert (s.interval_s, s.broadcast_budget_ms) == (0.2, 150)
    assert s.model_path == "s3://bucket/models"
    assert s.websocket_endpoint == "https://abc.execute-api.us-east-1.amazonaws.com/prod"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"PREDICTION_INTERVAL_SECONDS": "0"}, "PREDICTION_INTERVAL_SECONDS"),
        ({"PREDICTION_INTERVAL_SECONDS": "abc"}, "PREDICTION_INTERVAL_SECONDS"),
        ({"MAX_FEATURE_AGE_MS": "-1"}, "MAX_FEATURE_AGE_MS"),
        ({"SYMBOLS": "btc-usdt!"}, "SYMBOLS"),
        ({"SYMBOLS": "BTCUSDT,btcusdt"}, "SYMBOLS"),
        (
            {"SYMBOLS": "BTCUSDT,ETHUSDT", "REDIS_PREDICTION_KEY": "prediction:latest"},
            "REDIS_PREDICTION_KEY",
        ),
        ({"REDIS_PREDICTION_KEY": "prediction:{sym}:latest"}, "REDIS_PREDICTION_KEY"),
        ({"REDIS_PREDICTION_KEY": "prediction:{symbol}:{x}"}, "REDIS_PREDICTION_KEY"),
        ({"MODEL_PATH": "http://x"}, "MODEL_PATH"),
        ({"MODEL_PATH": "s3:///models"}, "MODEL_PATH"),
        ({"BROADCAST_BUDGET_MS": "1500"}, "BROADCAST_BUDGET_MS"),
        (
            {"PREDICTION_INTERVAL_SECONDS": "0.2", "BROADCAST_BUDGET_MS": "250"},
            "BROADCAST_BUDGET_MS",
        ),
        ({"MODEL_BATCH_SIZE": "0"}, "MODEL_BATCH_SIZE"),
        ({"WEBSOCKET_ENDPOINT": "wss://x"}, "WEBSOCKET_ENDPOINT"),
    ],
)
def test_bad_inference_values_raise_config_error_naming_the_variable(
    env: dict[str, str], name: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        InferenceSettings.from_env(env)


def test_a_short_interval_gets_a_third_of_it_as_the_default_broadcast_budget() -> None:
    short = InferenceSettings.from_env({"PREDICTION_INTERVAL_SECONDS": "0.3"})
    default = InferenceSettings.from_env({})

    assert short.broadcast_budget_ms == 100
    assert default.broadcast_budget_ms == 500


def test_prediction_keys_derive_from_the_latest_key() -> None:
    default = InferenceSettings.from_env({}).prediction_keys("ETHUSDT")
    custom = InferenceSettings.from_env(
        {"REDIS_PREDICTION_KEY": "pred.{symbol}", "SYMBOLS": "BTCUSDT,ETHUSDT"}
    ).prediction_keys("ETHUSDT")
    fixed = InferenceSettings.from_env({"REDIS_PREDICTION_KEY": "btc:latest"}).prediction_keys(
        "BTCUSDT"
    )

    assert (default.latest, default.history, default.pending, default.scored) == (
        "prediction:{ETHUSDT}:latest",
        "prediction:{ETHUSDT}:history",
        "prediction:{ETHUSDT}:pending",
        "prediction:{ETHUSDT}:scored",
    )
    assert (custom.latest, custom.history, custom.pending, custom.scored) == (
        "pred.{ETHUSDT}",
        "pred.{ETHUSDT}:history",
        "pred.{ETHUSDT}:pending",
        "pred.{ETHUSDT}:scored",
    )
    assert (fixed.latest, fixed.history) == ("btc:latest", "btc:history")


def test_the_predictor_loop_does_not_import_the_redis_driver() -> None:
    source = Path(inference_service.__file__).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module.split(".")[0])

    assert "redis" not in imported


def test_the_store_its_errors_and_the_broadcast_import_nothing_heavy() -> None:
    script = (
        "import sys, types, importlib, btcpred\n"
        "pkg = types.ModuleType('btcpred.inference')\n"  # skip the package's own __init__
        "pkg.__path__ = [btcpred.__path__[0] + '/inference']\n"
        "sys.modules['btcpred.inference'] = pkg\n"
        "for m in ('errors', 'store', 'result', 'lease', 'broadcast', 'freshness'):\n"
        "    importlib.import_module('btcpred.inference.' + m)\n"
        "print(','.join(h for h in ('numpy', 'onnxruntime', 'fastavro', 'boto3')"
        " if h in sys.modules))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.strip() == ""


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (redis.ConnectionError("refused"), True),
        (redis.TimeoutError("timed out"), True),
        (redis.exceptions.BusyLoadingError("LOADING"), True),
        (redis.exceptions.ClusterDownError("CLUSTERDOWN"), True),
        (redis.exceptions.TryAgainError("TRYAGAIN"), True),
        (redis.exceptions.ReadOnlyError("READONLY"), True),
        (redis.exceptions.RedisClusterException("no reachable node"), True),
        (redis.exceptions.AuthenticationError("WRONGPASS"), False),
        (redis.ResponseError("WRONGTYPE"), False),
        (redis.exceptions.ClusterCrossSlotError("CROSSSLOT"), False),
        (redis.exceptions.OutOfMemoryError("OOM"), False),
    ],
)
def test_redis_failures_are_classified_by_type(error: Exception, retryable: bool) -> None:
    typed = translate(error, "a read")

    assert isinstance(typed, StoreUnavailableError if retryable else StoreRejectedError)
    assert typed.retryable is retryable
    assert not isinstance(typed, redis.RedisError)  # callers catch the port's errors only


def test_a_non_redis_exception_is_not_classified() -> None:
    assert translate(ValueError("a bug"), "a read") is None
