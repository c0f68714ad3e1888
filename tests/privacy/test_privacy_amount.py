"""The one privacy-amount type: exact arithmetic, documents, rounding up and splitting;
the wire models and plans read as amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privacy import EpsilonLoss, InvalidQuery, QueryRequest, RhoLoss, plan_query
from privacy.amount import AMOUNT_QUANTUM, PrivacyAmount, float_at_most
from privacy.auto.planning import split_cost
from privacy.metadata import PureCost, ZcdpCost
from privacy.query import explicit_cost
from tests.factories import make_metadata

amounts = st.decimals(
    min_value=Decimal("1e-12"), max_value=Decimal(1_000_000), places=12, allow_nan=False
)
shares = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.5"), places=2)


@given(amounts)
def test_float_at_most_never_exceeds_the_exact_amount(value: Decimal) -> None:
    assert Decimal(float_at_most(value)) <= value
    assert Decimal(PrivacyAmount.of("pure", value).float_at_most()) <= value


@given(amounts)
def test_rounded_up_is_never_below_and_has_four_significant_digits(value: Decimal) -> None:
    rounded = PrivacyAmount.of("zcdp", value).rounded_up()
    assert rounded.value >= value
    assert rounded.value - value < Decimal(1).scaleb(value.adjusted() - 3) + AMOUNT_QUANTUM
    quantum = max(Decimal(1).scaleb(value.adjusted() - 3), AMOUNT_QUANTUM)
    assert rounded.value % quantum == 0  # 4 significant digits (or 12 decimal places)
    assert rounded.step_up() > rounded


@given(amounts, shares, st.integers(min_value=1, max_value=3))
def test_split_adds_up_exactly(value: Decimal, share: Decimal, parts: int) -> None:
    total = PrivacyAmount.of("pure", value)
    try:
        pieces, rest = total.split(share, parts)
    except ValueError:
        assert (value * share) < AMOUNT_QUANTUM * parts * 2
        return
    assert len(pieces) == parts
    assert sum((p.value for p in pieces), rest.value) == value
    assert all(p.value >= AMOUNT_QUANTUM for p in pieces)
    assert sum(p.value for p in pieces) <= value * share


@given(amounts)
def test_documents_read_back(value: Decimal) -> None:
    amount = PrivacyAmount.of("pure", value)
    assert amount.document() == {"model": "pure", "epsilon": amount.number()}
    assert amount.unit_document() == {"epsilon": amount.number()}
    again = PrivacyAmount.from_document({"epsilon": 0.1}, model="pure")
    assert again.value == Decimal("0.1")


def test_models_do_not_mix_and_floats_are_refused() -> None:
    pure, zcdp = PrivacyAmount.of("pure", 1), PrivacyAmount.of("zcdp", 1)
    with pytest.raises(ValueError):
        _ = pure + zcdp
    with pytest.raises(ValueError):
        _ = pure < zcdp
    with pytest.raises(TypeError):
        PrivacyAmount.of("pure", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PrivacyAmount.of("pure", -1)
    with pytest.raises(ValueError):
        PrivacyAmount.from_document({"rho": 1}, model="pure")
    assert PrivacyAmount.of("zcdp", "0.25").document() == {"model": "zcdp", "rho": 0.25}
    assert PrivacyAmount.of("pure", 2).number() == 2
    assert (pure + pure).value == 2 and (pure - pure).value == 0


def test_wire_models_read_as_amounts() -> None:
    assert EpsilonLoss(epsilon=Decimal("0.5")).amount() == PrivacyAmount.of("pure", "0.5")
    assert RhoLoss(rho=Decimal("0.125")).amount() == PrivacyAmount.of("zcdp", "0.125")
    assert PureCost(epsilon=Decimal("2")).amount() == PrivacyAmount.of("pure", 2)
    assert ZcdpCost(rho=Decimal("0.01")).amount() == PrivacyAmount.of("zcdp", "0.01")
    for amount in (PrivacyAmount.of("pure", "0.3"), PrivacyAmount.of("zcdp", "0.07")):
        assert explicit_cost(amount).amount() == amount


def test_a_plan_states_its_cost_as_an_amount() -> None:
    for model, privacy in (("pure", {"epsilon": "0.5"}), ("zcdp", {"rho": "0.05"})):
        plan = plan_query(
            QueryRequest.model_validate(
                {"dataset": "mobility_events", "statistic": "count", "privacy": privacy}
            ),
            make_metadata(),
            model,
        )
        assert plan.amount == PrivacyAmount.of(model, plan.cost)


def test_a_cost_too_small_to_split_is_an_invalid_query() -> None:
    with pytest.raises(InvalidQuery, match="too small to spend a share of it on choosing"):
        split_cost(PrivacyAmount.of("pure", "1e-12"), Decimal("0.1"), 1)
    pieces, rest = split_cost(PrivacyAmount.of("pure", "1"), Decimal("0.1"), 2)
    assert [p.value for p in pieces] == [Decimal("0.05")] * 2 and rest.value == Decimal("0.9")
