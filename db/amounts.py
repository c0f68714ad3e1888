"""Exact privacy amounts: Decimal in Python, integer units in SQL.

Budgets, caps and spending are stored as integers counting 10^-12 of an ε or
ρ. Integers add and compare exactly on every database, so no rounding can let
the sum of debits exceed a total. A cost is converted with :func:`cost_units`,
which rounds *up* (never undercharges); a total with :func:`total_units`, which
rounds *down* (never over-grants).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

UNITS_PER_ONE = 10**12
MAX_UNITS = 2**62  # far below BIGINT's 2^63 - 1, so spent + cost never overflows


def _to_units(amount: Decimal, rounding: str) -> int:
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"privacy amount must be finite and non-negative, got {amount}")
    units = int((amount * UNITS_PER_ONE).to_integral_value(rounding=rounding))
    if units > MAX_UNITS:
        raise ValueError(f"privacy amount {amount} is too large")
    return units


def cost_units(amount: Decimal) -> int:
    """Integer units of a cost, rounded up to the next 10^-12."""
    return _to_units(amount, ROUND_CEILING)


def total_units(amount: Decimal) -> int:
    """Integer units of a budget or cap total, rounded down to the 10^-12 below."""
    return _to_units(amount, ROUND_FLOOR)


def from_units(units: int) -> Decimal:
    """The exact Decimal amount that ``units`` stand for."""
    return (Decimal(units) / UNITS_PER_ONE).normalize()


def as_json_number(units: int) -> float | int:
    """A JSON number for display (shortest float that reads back to the same units)."""
    amount = from_units(units)
    if amount == amount.to_integral_value():
        return int(amount)
    return float(amount)
