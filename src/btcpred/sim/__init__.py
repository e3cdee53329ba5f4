"""Simulators and stand-ins for tests, benchmarks and the local stack.

``binance_rest`` (a Binance-shaped REST server with fault injection), ``management_api`` (API
Gateway's ``@connections`` API), ``lambda_events`` (Kinesis events as Lambda delivers them, a
local Lambda context, a fresh handler import) and ``services`` (throwaway Redis, Redis Cluster
and PostgreSQL servers). None of it runs in AWS.
"""
