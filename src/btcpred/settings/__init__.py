"""Typed settings, one object per entry point, parsed once per process over one parser.

The edge (a Lambda handler, the CLI, the container) passes ``os.environ``; the core never reads
the environment itself. An explicit value beats the environment, which beats the default. A bad
value raises :class:`ConfigError` naming the variable, at start, not on the first event.
"""

from btcpred.settings.aggregator import AggregatorSettings, PoisonPolicy
from btcpred.settings.clients import HttpSettings, WebSocketSettings
from btcpred.settings.inference import InferenceSettings
from btcpred.settings.parse import ConfigError, Env
from btcpred.settings.poller import PollerSettings

__all__ = [
    "AggregatorSettings",
    "ConfigError",
    "Env",
    "HttpSettings",
    "InferenceSettings",
    "PoisonPolicy",
    "PollerSettings",
    "WebSocketSettings",
]
