"""AWS adapters that need the Lambda extra (Powertools), kept out of the pure core.

boto3 is still never imported here: clients are made by the handlers.
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics as PowertoolsMetricsClient

__all__ = ["EmfMetrics"]


class EmfMetrics:
    """:class:`~btcpred.inference.outputs.Metrics` through Powertools' CloudWatch EMF.

    Values accumulate in the Powertools object and go out as one EMF log line per
    :meth:`flush`; the model version rides along as metadata (searchable in Logs Insights,
    no extra dimension cost).
    """

    def __init__(self, metrics: PowertoolsMetricsClient) -> None:
        self.metrics = metrics
        self._properties: dict[str, str] = {}

    def add(self, name: str, unit: str, value: float) -> None:
        self.metrics.add_metric(name=name, unit=unit, value=value)

    def property(self, name: str, value: str) -> None:
        self._properties[name] = value

    def flush(self) -> None:
        if not self.metrics.metric_set:  # nothing recorded (a standby stretch): no empty blob
            return
        for name, value in self._properties.items():
            self.metrics.add_metadata(key=name, value=value)
        self.metrics.flush_metrics()
