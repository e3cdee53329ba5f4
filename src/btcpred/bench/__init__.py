"""Benchmarks, run as ``btcpred bench <name> [--json]``; results go to ``docs/benchmarks.md``."""
