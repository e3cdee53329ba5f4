"""Simulators and stand-ins for tests, benchmarks and the local stack.

``exchange`` (a Binance market-data exchange: SBE and JSON WebSocket streams and REST depth
served from a capture, with faults; ``docs/simulator.md``), ``binance_rest`` (a Binance-shaped
REST server with fault injection), ``management_api`` (API
Gateway's ``@connections`` API), ``lambda_events`` (Kinesis events as Lambda delivers them, a
local Lambda context, a fresh handler import) and ``services`` (throwaway Redis, Redis Cluster
and PostgreSQL servers). None of it runs in AWS.
"""
