"""Market-data sources: Binance JSON messages and recorded captures."""
