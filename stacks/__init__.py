"""The btcpred CDK app's constructs, one module per concern (see app.py)."""
