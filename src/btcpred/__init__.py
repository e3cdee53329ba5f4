"""btcpred: a real-time BTCUSDT price predictor (core library)."""

__version__ = "0.1.0"
