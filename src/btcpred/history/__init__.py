"""Market history: Binance REST and dump files → Avro objects (S3 or a directory) → PostgreSQL.

Nothing here imports boto3; the S3 adapters live in :mod:`btcpred.history.aws` (an edge).
"""
