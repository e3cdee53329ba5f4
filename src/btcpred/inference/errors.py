"""Typed failures of the inference side's store (Redis), split into retryable and permanent.

The predictor loop, the lease and the client-facing functions catch these instead of the
driver's exceptions, so none of them imports ``redis`` to decide what a failure means. This
module imports nothing: the light functions (HTTP, WebSocket) can use it as they are.

=================================  ==========================================================
:class:`StoreUnavailableError`     retryable: unreachable, timed out, loading, cluster down or
                                   failing over. The loop switches to direct REST mode and
                                   tries again after a second.
:class:`StoreRejectedError`        permanent: Redis answered, but with an error a retry of the
                                   same request will not fix (wrong key type, a cross-slot
                                   request, refused credentials). Counted and logged; the step
                                   that failed does without Redis for this tick.
=================================  ==========================================================
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["InferenceStoreError", "StoreRejectedError", "StoreUnavailableError"]


class InferenceStoreError(Exception):
    """A request to the store failed; nothing is known about whether it took effect."""

    retryable: ClassVar[bool] = False
    """Whether the same request can succeed later without anything being changed."""


class StoreUnavailableError(InferenceStoreError):
    """The store could not be reached or cannot serve right now (retryable)."""

    retryable: ClassVar[bool] = True


class StoreRejectedError(InferenceStoreError):
    """The store answered with an error that retrying will not fix (permanent)."""

    retryable: ClassVar[bool] = False
