"""The fallback poller: Binance's REST tickers → ``features:{S}:fallback`` in Redis."""
