"""Exact privacy amounts: integer units never let debits pass a total, costs round up,
totals round down (Hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from db.amounts import (
    MAX_UNITS,
    UNITS_PER_ONE,
    as_json_number,
    cost_units,
    from_units,
    total_units,
)

MAX_AMOUNT = Decimal(MAX_UNITS) / UNITS_PER_ONE


def amounts(places: int = 20, max_value: str = "1000") -> st.SearchStrategy[Decimal]:
    """Non-negative finite decimals, with more places than the 12 that units keep."""
    return st.decimals(
        min_value=0,
        max_value=Decimal(max_value),
        places=places,
        allow_nan=False,
        allow_infinity=False,
    )


def long_amounts() -> st.SearchStrategy[Decimal]:
    """Decimals with more significant digits than the default context's 28."""
    return st.builds(
        lambda whole, fraction, tail: Decimal(f"{whole}.{fraction:012d}{tail}"),
        st.integers(0, 10**6 - 1),
        st.integers(0, 10**12 - 1),
        st.text("0123456789", min_size=1, max_size=30),
    )


@given(total=amounts(), costs=st.lists(amounts(max_value="50"), max_size=40))
def test_debits_in_units_never_exceed_the_total(total: Decimal, costs: list[Decimal]) -> None:
    limit = total_units(total)
    spent = 0
    charged: list[Decimal] = []
    for cost in costs:
        units = cost_units(cost)
        if spent + units <= limit:
            spent += units
            charged.append(cost)
    assert spent <= limit
    assert from_units(spent) <= total
    assert sum(charged, Decimal(0)) <= total  # the true costs fit too, exactly


@given(amount=st.one_of(amounts(), long_amounts()))
@example(amount=Decimal("0.1"))
@example(amount=Decimal("1.0000000000000000000000000000001"))
@example(amount=Decimal("0.0000000000001"))
def test_costs_round_up_and_totals_round_down(amount: Decimal) -> None:
    up, down = cost_units(amount), total_units(amount)
    assert down <= up <= down + 1
    assert from_units(down) <= amount <= from_units(up)
    assert up - down == (0 if from_units(down) == amount else 1)


@given(units=st.integers(0, MAX_UNITS))
def test_units_round_trip(units: int) -> None:
    amount = from_units(units)
    assert cost_units(amount) == total_units(amount) == units
    if len(str(units).lstrip("0")) <= 15:  # what a double holds exactly
        shown = as_json_number(units)
        assert total_units(Decimal(str(shown))) == units


@pytest.mark.parametrize(
    "bad",
    [
        Decimal("-0.000000000001"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        MAX_AMOUNT + 1,
        Decimal("1e30"),
        Decimal("1e999999"),
    ],
)
def test_negative_infinite_and_huge_amounts_are_refused(bad: Decimal) -> None:
    for convert in (cost_units, total_units):
        with pytest.raises(ValueError):
            convert(bad)


def test_largest_amount() -> None:
    assert total_units(MAX_AMOUNT) == cost_units(MAX_AMOUNT) == MAX_UNITS
    assert cost_units(Decimal(0)) == total_units(Decimal("-0")) == 0
