"""Constants of Binance's spot SBE stream schema (``stream_1_0.xml``: id 1, version 0).

The wire layouts themselves live next to the code that reads (``decoder``) or writes
(``encoder``) them, each written from the schema on its own so that one checks the other.
"""

from __future__ import annotations

from enum import IntEnum

SCHEMA_ID = 1
"""``messageSchema id`` of the spot stream schema."""

SCHEMA_VERSION = 0
"""The schema version this codec was written from; newer versions are read by block lengths."""

HEADER_SIZE = 8
"""``messageHeader``: blockLength u16, templateId u16, schemaId u16, version u16."""


class TemplateId(IntEnum):
    """Message template ids of the spot stream schema."""

    TRADES = 10000
    BEST_BID_ASK = 10001
    DEPTH_SNAPSHOT = 10002
    DEPTH_DIFF = 10003
