"""The ingestor's core: Binance stream → Kinesis with nothing lost and every gap recorded.

See docs/ingestor.md. :class:`~btcpred.ingest.service.Ingestor` is the process;
``btcpred ingest`` (``btcpred.ingest.main``) builds it from the environment.
"""
