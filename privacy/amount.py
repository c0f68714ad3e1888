"""Privacy amounts: the one exact type for every ε and ρ the service handles.

A :class:`PrivacyAmount` is a privacy model (``pure``: ε-DP, ε adds up;
``zcdp``: ρ-zCDP, ρ adds up) and an exact non-negative :class:`~decimal.Decimal`
value. Costs, budgets, caps, what remains and the pieces of a split cost are
all this type inside the service; the wire documents (``{"epsilon": 0.5}``,
``{"model": "pure", "epsilon": 0.5}``) are produced and read here and nowhere
else. Floats appear only at the OpenDP boundary, through :meth:`float_at_most`
(never above the exact amount, so OpenDP is never asked to spend more than is
debited). The database stores integer units of 10⁻¹² (``db.amounts``); a
privacy amount has at most 12 decimal places once rounded with
:meth:`PrivacyAmount.rounded_up`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Literal, cast

PrivacyModel = Literal["pure", "zcdp"]
"""``pure``: ε-DP (Laplace family); ``zcdp``: ρ-zCDP (Gaussian family)."""
PrivacyUnit = Literal["epsilon", "rho"]
UNIT_OF: dict[PrivacyModel, PrivacyUnit] = {"pure": "epsilon", "zcdp": "rho"}
MODEL_OF: dict[PrivacyUnit, PrivacyModel] = {"epsilon": "pure", "rho": "zcdp"}
AMOUNT_DECIMAL_PLACES = 12
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)
"""Amounts carry at most 12 decimal places, like the integer units the database stores."""
MAX_PRIVACY_AMOUNT = 1_000_000
"""The largest ε or ρ of a budget, cap or query cost (as ``db.amounts.MAX_AMOUNT``)."""
COST_SIGNIFICANT_DIGITS = 4
"""Costs found by a search (accuracy-first) are rounded up to this many significant digits."""


def float_at_most(exact: Decimal) -> float:
    """The largest float not above the exact amount ``exact`` (what OpenDP may spend)."""
    value = float(exact)
    if Decimal(value) > exact:
        value = math.nextafter(value, -math.inf)
    return value


def float_at_least(exact: Decimal) -> float:
    """The smallest float not below the exact amount ``exact`` (an upper bound on a loss)."""
    value = float(exact)
    if Decimal(value) < exact:
        value = math.nextafter(value, math.inf)
    return value


def json_number(value: Decimal) -> int | float:
    """``value`` as a JSON number: an int when integral, else the nearest float."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def cost_step(value: Decimal) -> Decimal:
    """One unit in the last of :data:`COST_SIGNIFICANT_DIGITS` digits of ``value`` (≥ 10⁻¹²)."""
    if value == 0:
        return AMOUNT_QUANTUM
    step = Decimal(1).scaleb(value.adjusted() - COST_SIGNIFICANT_DIGITS + 1)
    return max(step, AMOUNT_QUANTUM)


@dataclass(frozen=True)
class PrivacyAmount:
    """An exact amount of privacy loss: ``value`` of ε (``pure``) or of ρ (``zcdp``).

    Arithmetic and comparisons are exact and only between amounts of one model
    (a ``ValueError`` otherwise); a negative or non-finite value is refused.
    """

    model: PrivacyModel
    value: Decimal

    def __post_init__(self) -> None:
        if self.model not in UNIT_OF:
            raise ValueError(f"unknown privacy model {self.model!r}")
        if not isinstance(self.value, Decimal):
            object.__setattr__(self, "value", Decimal(str(self.value)))
        if not self.value.is_finite() or self.value < 0:
            raise ValueError(f"a privacy amount is finite and non-negative, got {self.value}")

    @classmethod
    def of(cls, model: str, value: Decimal | int | str) -> PrivacyAmount:
        """``value`` (exact; floats are refused) of ``model``."""
        if isinstance(value, float):
            raise TypeError("privacy amounts are exact: pass a Decimal, an int or a string")
        return cls(model=cast(PrivacyModel, model), value=Decimal(value))

    @classmethod
    def zero(cls, model: str) -> PrivacyAmount:
        """Nothing of ``model``."""
        return cls.of(model, 0)

    @classmethod
    def from_document(cls, document: dict[str, Any], model: str | None = None) -> PrivacyAmount:
        """Read ``{"model": m, "epsilon"|"rho": x}`` or, with ``model``, ``{"epsilon"|"rho": x}``.

        The number is read through its decimal text, so ``0.1`` is exactly 0.1.
        """
        model = document.get("model", model)
        if model not in UNIT_OF:
            raise ValueError(f"no privacy model in {document!r}")
        unit = UNIT_OF[cast(PrivacyModel, model)]
        if unit not in document:
            raise ValueError(f"a {model} amount needs {unit!r}, got {sorted(document)}")
        return cls.of(model, str(document[unit]))

    @property
    def unit(self) -> PrivacyUnit:
        """``"epsilon"`` or ``"rho"``."""
        return UNIT_OF[self.model]

    def number(self) -> int | float:
        """The value as a JSON number (exact when integral, else the nearest float)."""
        return json_number(self.value)

    def document(self) -> dict[str, Any]:
        """``{"model": "pure", "epsilon": 0.5}``: a cost, budget or cap on the wire."""
        return {"model": self.model, self.unit: self.number()}

    def unit_document(self) -> dict[str, Any]:
        """``{"epsilon": 0.5}``: an amount whose model is said elsewhere (what remains)."""
        return {self.unit: self.number()}

    def float_at_most(self) -> float:
        """The largest float not above the amount: what OpenDP is asked to spend at most."""
        return float_at_most(self.value)

    def rounded_up(self, significant_digits: int = COST_SIGNIFICANT_DIGITS) -> PrivacyAmount:
        """Rounded up to ``significant_digits`` significant digits and to at most 12 places."""
        if self.value == 0:
            return self
        quantum = max(
            Decimal(1).scaleb(self.value.adjusted() - significant_digits + 1), AMOUNT_QUANTUM
        )
        return self._with(self.value.quantize(quantum, rounding=ROUND_CEILING))

    def step_up(self) -> PrivacyAmount:
        """The next amount at :data:`COST_SIGNIFICANT_DIGITS` significant digits."""
        return self._with(self.value + cost_step(self.value))

    def split(self, share: Decimal, parts: int) -> tuple[list[PrivacyAmount], PrivacyAmount]:
        """``(pieces, rest)``: ``parts`` pieces summing to ``floor(share · self)`` (to 12
        places) and the exact rest, so that ``sum(pieces) + rest == self`` exactly.

        Raises ``ValueError`` when a piece would be below 10⁻¹².
        """
        selection = (self.value * share).quantize(AMOUNT_QUANTUM, rounding=ROUND_FLOOR)
        if parts < 1 or selection < AMOUNT_QUANTUM * parts:
            raise ValueError(f"{self.value} is too small to split {parts} ways at {share}")
        piece = (selection / parts).quantize(AMOUNT_QUANTUM, rounding=ROUND_FLOOR)
        values = [piece] * (parts - 1) + [selection - piece * (parts - 1)]
        return [self._with(v) for v in values], self._with(self.value - selection)

    def _with(self, value: Decimal) -> PrivacyAmount:
        return PrivacyAmount(model=self.model, value=value)

    def _same_model(self, other: PrivacyAmount) -> PrivacyAmount:
        if not isinstance(other, PrivacyAmount) or other.model != self.model:
            raise ValueError(f"cannot combine a {self.model} amount with {other!r}")
        return other

    def __add__(self, other: PrivacyAmount) -> PrivacyAmount:
        return self._with(self.value + self._same_model(other).value)

    def __sub__(self, other: PrivacyAmount) -> PrivacyAmount:
        return self._with(self.value - self._same_model(other).value)

    def __lt__(self, other: PrivacyAmount) -> bool:
        return self.value < self._same_model(other).value

    def __le__(self, other: PrivacyAmount) -> bool:
        return self.value <= self._same_model(other).value

    def __gt__(self, other: PrivacyAmount) -> bool:
        return self.value > self._same_model(other).value

    def __ge__(self, other: PrivacyAmount) -> bool:
        return self.value >= self._same_model(other).value

    def __str__(self) -> str:
        return f"{self.unit}={self.value}"
