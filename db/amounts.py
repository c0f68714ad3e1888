"""Exact privacy amounts: Decimal in Python, integer units in SQL.

Budgets, caps and spending are stored as integers counting 10^-12 of an ε or
ρ. Integers add and compare exactly on every database, so no rounding can let
the sum of debits exceed a total. A cost is converted with :func:`cost_units`,
which rounds *up* (never undercharges); a total with :func:`total_units`, which
rounds *down* (never over-grants).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

UNITS_DECIMAL_PLACES = 12
UNITS_PER_ONE: int = 10**UNITS_DECIMAL_PLACES
MAX_AMOUNT = 1_000_000
"""The largest ε or ρ of a budget, cap or cost (the API refuses more with a 422)."""
MAX_UNITS = MAX_AMOUNT * UNITS_PER_ONE  # 10^18: spent + cost ≤ 2·10^18 < BIGINT's 2^63 - 1
_MAX_AMOUNT = Decimal(MAX_AMOUNT)
MODEL_UNITS = {"pure": "epsilon", "zcdp": "rho"}
"""The unit each privacy model's amounts count (as ``privacy.amount.UNIT_OF``)."""


def _to_units(amount: Decimal, rounding: str) -> int:
    # Integer arithmetic on the coefficient, not Decimal arithmetic: the default
    # context keeps 28 digits, which would round a long amount before it is rounded
    # up or down here (and overflow on a huge exponent).
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"privacy amount must be finite and non-negative, got {amount}")
    if amount > _MAX_AMOUNT:  # an exact comparison, before any arithmetic
        raise ValueError(f"privacy amount {amount} is too large: at most {MAX_AMOUNT}")
    _, digits, exponent = amount.as_tuple()
    coefficient = int("".join(map(str, digits)))
    shift = int(exponent) + UNITS_DECIMAL_PLACES  # units = coefficient * 10**shift, then rounded
    if coefficient == 0:
        return 0
    if shift >= 0:
        units = coefficient * int(10**shift)
    elif -shift > len(digits):  # less than one unit
        units = 1 if rounding == ROUND_CEILING else 0
    else:
        units, remainder = divmod(coefficient, int(10**-shift))
        if remainder and rounding == ROUND_CEILING:
            units += 1
    if units > MAX_UNITS:
        raise ValueError(f"privacy amount {amount} is too large: at most {MAX_AMOUNT}")
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


def units_document(model: str, units: int) -> dict[str, Any]:
    """``{"model": m, "epsilon"|"rho": x}`` for ``units`` of ``model``, as ledger entries
    carry it (the document ``privacy.amount.PrivacyAmount.document`` gives for that amount)."""
    return {"model": model, MODEL_UNITS[model]: as_json_number(units)}
