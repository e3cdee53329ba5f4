"""The poller Lambda handler end to end: a Lambda-shaped context whose time runs out, the local
Binance REST server, real Redis, and the EMF metrics Powertools prints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from btcpred.features import FeatureSnapshot
from btcpred.klines import Kline
from btcpred.poller import UNITS
from btcpred.sim.binance_rest import BinanceRestServer
from btcpred.sim.lambda_events import LocalLambdaContext, load_lambda_module
from tests.samples import COMPLETE_FEATURES

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "poller" / "handler.py"
FALLBACK, LATEST = "features:{BTCUSDT}:fallback", "features:{BTCUSDT}:latest"


@dataclass
class RunningOutContext(LocalLambdaContext):
    """A context whose remaining time falls with the wall clock, as Lambda's does."""

    function_name: str = "btcpred-poller"

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return round((self._deadline - time.monotonic()) * 1000)


@pytest.fixture
def rest(warmup_klines: list[Kline]) -> Iterator[BinanceRestServer]:
    with BinanceRestServer(warmup_klines) as server:
        yield server


@pytest.fixture
def env(aws_env: pytest.MonkeyPatch, redis_url: str, rest: BinanceRestServer) -> pytest.MonkeyPatch:
    for name in ("SYMBOLS", "REDIS_AUTH_SECRET_ARN", "REDIS_CLUSTER"):
        aws_env.delenv(name, raising=False)
    aws_env.setenv("REDIS_URL", redis_url)
    aws_env.setenv("BINANCE_REST_URL", rest.url)
    aws_env.setenv("REST_TIMEOUT_SECONDS", "0.2")
    aws_env.setenv("POLLER_INTERVAL_SECONDS", "1")
    aws_env.setenv("FALLBACK_TTL_SECONDS", "5")
    aws_env.setenv("POLLER_STOP_MARGIN_MS", "1000")
    aws_env.setenv("POWERTOOLS_METRICS_NAMESPACE", "btcpred")
    return aws_env


def emf_values(out: str) -> dict[str, list[float]]:
    """Every metric value in the EMF lines printed, by name (units checked against UNITS)."""
    values: dict[str, list[float]] = {}
    for line in out.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob: dict[str, Any] = json.loads(line)
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "btcpred"
        assert directive["Dimensions"] == [["service"]]
        assert blob["service"] == "poller"
        for metric in directive["Metrics"]:
            assert metric["Unit"] == UNITS[metric["Name"]]
            value = blob[metric["Name"]]
            values.setdefault(metric["Name"], []).extend(
                value if isinstance(value, list) else [value]
            )
    return values


def test_the_handler_polls_until_its_time_is_nearly_up_and_emits_the_metrics(
    env: pytest.MonkeyPatch,
    redis_client: redis.Redis,
    rest: BinanceRestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = FeatureSnapshot.build("BTCUSDT", time.time_ns() // 1_000_000, COMPLETE_FEATURES)
    redis_client.set(LATEST, stream.to_json())
    module = load_lambda_module(HANDLER, "poller_handler")
    context = RunningOutContext(remaining_ms=3_500)

    summary = module.handler({"source": "aws.events"}, context)

    left = context.get_remaining_time_in_millis()
    assert 0 < left < 1_000 + 1_000  # stopped at the margin, not long before it
    assert summary["errors"] == 0
    assert summary["writes"] == summary["polls"] >= 2
    assert 0 < redis_client.ttl(FALLBACK) <= 5
    snap = FeatureSnapshot.from_json(redis_client.get(FALLBACK) or b"")
    assert time.time_ns() // 1_000_000 - snap.timestamp < 2_500
    values = emf_values(capsys.readouterr().out)
    assert sum(values["PollerPolls"]) == summary["polls"]
    assert sum(values["PollerFallbackWrites"]) == summary["writes"]
    rest_price = snap.price or 0.0
    bps = abs(rest_price - 60_000.0) / rest_price * 1e4  # the stream's price is 60,000
    assert values["PriceDivergenceBps"][-1] == pytest.approx(bps)
    assert len(values["StreamFeatureAgeMs"]) == summary["writes"]
    assert len(values["PollerRestLatencyMs"]) == 2 * summary["polls"]


def test_a_warm_container_keeps_its_poller(
    env: pytest.MonkeyPatch, redis_client: redis.Redis, rest: BinanceRestServer
) -> None:
    module = load_lambda_module(HANDLER, "poller_handler_warm")
    module.handler({}, RunningOutContext(remaining_ms=1_200))
    poller = module._poller

    second = module.handler({}, RunningOutContext(remaining_ms=1_200))

    assert module._poller is poller
    assert second["writes"] == 1


def test_a_bad_setting_fails_the_cold_start_naming_the_variable(
    env: pytest.MonkeyPatch,
) -> None:
    from btcpred.settings import ConfigError

    env.setenv("FALLBACK_TTL_SECONDS", "1")
    module = load_lambda_module(HANDLER, "poller_handler_bad")

    with pytest.raises(ConfigError, match="FALLBACK_TTL_SECONDS"):
        module.handler({}, RunningOutContext(remaining_ms=1_200))


# -- btcpred poll ------------------------------------------------------------------------------


def test_btcpred_poll_runs_the_same_loop_for_its_duration(
    redis_client: redis.Redis,
    redis_url: str,
    rest: BinanceRestServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from btcpred.cli import main

    code = main(
        ["poll", "--rest-url", rest.url, "--redis-url", redis_url, "--interval", "1", "--ttl", "5"]
        + ["--duration", "1.5"]
    )

    out = capsys.readouterr().out
    summary = dict(f.split("=") for f in out.splitlines()[1].split())
    assert code == 0
    assert int(summary["writes"]) >= 2  # at once, then at each whole second within 1.5 s
    assert summary["errors"] == "0"
    assert 0 < redis_client.ttl(FALLBACK) <= 5


def test_btcpred_poll_reports_a_bad_flag_as_the_variable_it_sets(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from btcpred.cli import main

    code = main(["poll", "--redis-url", redis_url, "--interval", "0"])

    assert code == 1
    assert "POLLER_INTERVAL_SECONDS='0'" in capsys.readouterr().err
