"""The seed's PredictionResult: what every output carries, field for field."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["PredictionResult", "ResultFormatError", "Source"]

Source = Literal["redis", "fallback"]


class ResultFormatError(ValueError):
    """A stored prediction document is not a PredictionResult."""


class PredictionResult(msgspec.Struct, frozen=True, kw_only=True):
    """One 60-second-ahead prediction (JSON field names and order are the seed's).

    ``timestamp`` is when the prediction was made (ms since the epoch, UTC); the prediction is
    for the price ``prediction_horizon_seconds`` after the features' own time, which is
    ``timestamp - features_age_ms``. ``inference_latency_ms`` is measured from the start of the
    tick (features read included) to this result, by ``time.perf_counter``.
    """

    symbol: str
    timestamp: int
    current_price: float
    predicted_price: float
    prediction_horizon_seconds: int
    confidence: float
    model_version: str
    features_age_ms: int
    inference_latency_ms: float
    source: Source

    @property
    def features_time_ms(self) -> int:
        """The time the features describe."""
        return self.timestamp - self.features_age_ms

    @property
    def target_time_ms(self) -> int:
        """The time whose price this predicts."""
        return self.features_time_ms + self.prediction_horizon_seconds * 1000

    def to_json(self) -> bytes:
        """Compact JSON, the seed's fields only."""
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> PredictionResult:
        """Parse :meth:`to_json` output.

        Raises
        ------
        ResultFormatError
            Not a PredictionResult document.
        """
        try:
            return _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ResultFormatError(f"not a PredictionResult: {exc}") from None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(PredictionResult)
