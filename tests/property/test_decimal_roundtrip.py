"""Decimal strings round-trip exactly, and agree with Python's Decimal."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from btcpred.events import format_decimal, parse_decimal, to_decimal

mantissas = st.integers(min_value=-(2**63), max_value=2**63 - 1)
exponents = st.integers(min_value=-128, max_value=127)


@given(mantissas, exponents)
def test_format_then_parse_is_identity(mantissa: int, exponent: int) -> None:
    assert parse_decimal(format_decimal(mantissa, exponent)) == (mantissa, exponent)


@given(mantissas, exponents)
def test_formatted_value_equals_decimal_reference(mantissa: int, exponent: int) -> None:
    assert Decimal(format_decimal(mantissa, exponent)) == Decimal(mantissa).scaleb(exponent)
    assert to_decimal(mantissa, exponent) == Decimal(mantissa) * Decimal(10) ** exponent
