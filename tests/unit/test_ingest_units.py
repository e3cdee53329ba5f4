"""The ingestor's pure parts: the sequencer, the health check, the settings, the backoff."""

from __future__ import annotations

import random

import pytest

from btcpred.events import BestBidAsk, DepthDiff, Trade
from btcpred.ingest.connection import AttemptLimiter, Backoff, is_server_shutdown
from btcpred.ingest.health import HealthBounds, Heartbeat, check_health
from btcpred.ingest.sequence import Sequencer
from btcpred.settings.ingest import IngestSettings, StreamFormat
from btcpred.settings.parse import ConfigError

T0 = 1_723_161_600_000_000
S = 1_000_000_000


def trade(trade_id: int) -> Trade:
    return Trade("BTCUSDT", T0 + trade_id, T0 + trade_id, trade_id, 1, 1, -8, -8, False)


def diff(first: int, last: int) -> DepthDiff:
    return DepthDiff("BTCUSDT", T0 + last, first, last, -8, -8, (), ())


def quote(update_id: int) -> BestBidAsk:
    return BestBidAsk("BTCUSDT", T0 + update_id, update_id, -8, -8, 1, 1, 2, 1)


def test_contiguous_trades_pass_duplicates_drop_and_a_jump_is_a_gap() -> None:
    seq = Sequencer()
    assert [seq.check(trade(i)).accept for i in (10, 11, 11, 9, 12)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    verdict = seq.check(trade(20))
    assert verdict.accept
    assert verdict.gap is not None
    assert (verdict.gap.from_id, verdict.gap.to_id, verdict.gap.reason) == (13, 19, "sequence")
    assert (seq.duplicates, seq.gaps, seq.gap_ids) == (2, 1, 7)


def test_the_expected_reason_names_the_next_break_only() -> None:
    seq = Sequencer()
    seq.check(trade(1))
    seq.expect_break("reconnect")
    gap = seq.check(trade(5)).gap
    assert gap is not None
    assert gap.reason == "reconnect"
    later = seq.check(trade(9)).gap
    assert later is not None
    assert later.reason == "sequence"
    seq.expect_break("rotation")
    assert seq.check(trade(10)).gap is None  # in order: the reason is dropped unused
    assert seq.check(trade(12)).gap.reason == "sequence"  # type: ignore[union-attr]


def test_depth_diffs_must_chain_and_a_snapshot_resets_the_chain() -> None:
    seq = Sequencer()
    assert seq.check(diff(100, 105)).gap is None
    assert seq.check(diff(106, 110)).gap is None
    assert not seq.check(diff(101, 110)).accept  # already covered
    gap = seq.check(diff(115, 120)).gap
    assert gap is not None
    assert (gap.stream, gap.from_id, gap.to_id) == ("depth", 111, 114)
    seq.reset_depth("BTCUSDT", 200)
    assert not seq.check(diff(190, 200)).accept  # inside the snapshot
    assert seq.check(diff(195, 205)).gap is None  # straddles it: Binance's first diff


def test_quote_update_ids_jump_without_a_gap_but_never_go_back() -> None:
    seq = Sequencer()
    verdicts = [seq.check(quote(u)) for u in (5, 50, 50, 49, 500)]
    assert [v.accept for v in verdicts] == [True, True, False, False, True]
    assert all(v.gap is None for v in verdicts)


def beat(**changes: object) -> Heartbeat:
    fields: dict[str, object] = {
        "pid": 1,
        "written_ns": 1000 * S,
        "started_ns": 0,
        "last_frame_ns": 999 * S,
        "last_ack_ns": 999 * S,
        "buffer_fill": 0.1,
        "queued_messages": 10,
        "connected": True,
    }
    fields.update(changes)
    return Heartbeat(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "now_s", "needle"),
    [
        ({}, 1001, None),
        ({}, 1040, "heartbeat is 40 s old"),
        ({"last_frame_ns": 900 * S}, 1001, "no frame"),
        ({"last_frame_ns": 0}, 1001, "never"),
        ({"last_frame_ns": 0, "started_ns": 990 * S}, 1001, None),  # start-up grace
        ({"last_ack_ns": 800 * S}, 1001, "acknowledged nothing"),
        ({"last_ack_ns": 800 * S, "queued_messages": 0}, 1001, None),  # nothing waits
        ({"buffer_fill": 0.95}, 1001, "95% full"),
    ],
)
def test_the_health_check(changes: dict[str, object], now_s: int, needle: str | None) -> None:
    problem = check_health(beat(**changes), now_s * S, HealthBounds())
    if needle is None:
        assert problem is None
    else:
        assert problem is not None
        assert needle in problem


def test_settings_need_a_stream_and_a_key_for_sbe() -> None:
    with pytest.raises(ConfigError, match="KINESIS_STREAM_NAME"):
        IngestSettings.from_env({})
    with pytest.raises(ConfigError, match="needs an API key"):
        IngestSettings.from_env({"KINESIS_STREAM_NAME": "s"})
    with pytest.raises(ConfigError, match="one place only"):
        IngestSettings.from_env(
            {
                "KINESIS_STREAM_NAME": "s",
                "BINANCE_API_KEY": "k",
                "BINANCE_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:ap-northeast-1:"
                "123456789012:secret:binance-AbCdEf",
            }
        )
    json_ = IngestSettings.from_env({"KINESIS_STREAM_NAME": "s"}, stream_format=StreamFormat.JSON)
    assert json_.connect_url() == (
        "wss://stream.binance.com:9443/stream?streams="
        "btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms"
    )
    sbe = IngestSettings.from_env(
        {
            "KINESIS_STREAM_NAME": "s",
            "BINANCE_API_KEY": "k",
            "SYMBOLS": "BTCUSDT,ETHUSDT",
            "BINANCE_STREAM_URL": "ws://127.0.0.1:9/",
            "INGEST_FLUSH_WINDOW_MS": "250",
        }
    )
    assert sbe.connect_url() == (
        "ws://127.0.0.1:9/stream?streams=btcusdt@trade/btcusdt@bestBidAsk/btcusdt@depth/"
        "ethusdt@trade/ethusdt@bestBidAsk/ethusdt@depth"
    )
    assert sbe.flush_window_s == 0.25
    with pytest.raises(ConfigError, match="BINANCE_STREAM_URL"):
        IngestSettings.from_env(
            {"KINESIS_STREAM_NAME": "s", "BINANCE_API_KEY": "k", "BINANCE_STREAM_URL": "http://x"}
        )


def test_backoff_is_full_jitter_under_a_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(3))
    delays = [backoff.next_delay() for _ in range(12)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(delays[5:]) > 2.0  # reaches the cap's range
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_the_attempt_limiter_holds_a_sliding_window() -> None:
    now = [0.0]
    limiter = AttemptLimiter(3, 10.0, lambda: now[0])
    for _ in range(3):
        assert limiter.wait_s() == 0
        limiter.record()
    assert limiter.wait_s() == pytest.approx(10.0)
    now[0] = 10.5
    assert limiter.wait_s() == 0


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"e": "serverShutdown", "E": 1}, True),
        ({"event": {"e": "serverShutdown", "E": 1}}, True),
        ({"stream": "x", "data": {"e": "serverShutdown"}}, True),
        ({"e": "trade"}, False),
        ({"result": None, "id": 1}, False),
        ([1], False),
    ],
)
def test_server_shutdown_in_every_shape(obj: object, expected: bool) -> None:
    assert is_server_shutdown(obj) is expected


def test_the_api_key_comes_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    from btcpred.credentials import CredentialsError
    from btcpred.ingest.aws import read_api_key

    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("secretsmanager")
        bare = client.create_secret(Name="binance", SecretString=" abc123 \n")["ARN"]
        wrapped = client.create_secret(Name="wrapped", SecretString='{"api_key":"xyz"}')["ARN"]
        empty = client.create_secret(Name="empty", SecretString="PLACEHOLDER value")["ARN"]
        assert read_api_key(bare) == "abc123"
        assert read_api_key(wrapped) == "xyz"
        with pytest.raises(CredentialsError, match="holds no API key"):
            read_api_key(empty)
        with pytest.raises(CredentialsError, match="cannot read"):
            read_api_key(bare.replace("binance", "missing"))
