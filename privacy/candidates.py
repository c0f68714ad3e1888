"""Candidate values for automatic bounds, from public metadata only.

Automatic contribution bounds choose ``k`` (groups per unit) among 1..limit,
capped by the number of key combinations, and ``c`` (rows per group per unit)
among 1..limit, where the limits are the dataset's public ``auto_limits``.
Automatic clamping bounds choose among nested intervals inside the column's
public bounds, whose widths form a geometric grid (ratio 1/√2) — see
:class:`ClampCandidates`. Nothing here looks at the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

CLAMP_RATIO = 2.0**-0.5
"""Each clamping candidate is this much narrower than the previous one."""
MAX_CLAMP_CANDIDATES = 32
"""At most this many clamping candidates: widths down to 2^-15.5 of the public width."""

ClampMode = Literal["upper", "lower", "symmetric"]


@dataclass(frozen=True)
class ClampCandidates:
    """Nested clamping intervals inside the public bounds ``[L, U]``, narrowest first.

    The mode follows the public bounds: ``upper`` when ``L ≥ 0`` (candidates
    ``[L, L + w]``: only the upper bound moves), ``lower`` when ``U ≤ 0``
    (``[U − w, U]``) and ``symmetric`` otherwise (``[max(L, −w), min(U, w)]``,
    the shape that minimises the sensitivity ``max(|lower|, |upper|)`` for a
    given coverage of ``|x|``). ``widths`` are ascending and end with the
    public width ``W`` (``U − L``, or ``max(−L, U)`` when symmetric); the last
    candidate is the public bounds themselves. Integer columns get integer
    widths (at least 1).

    A value ``x`` lies outside candidate ``w`` by ``max(0, y(x) − w)`` where
    ``y(x)`` is :meth:`distance_expression`'s quantity: ``x − L``, ``U − x`` or
    ``|x|``, clipped to ``[0, W]`` (beyond the public bounds everything is
    clamped anyway).
    """

    mode: ClampMode
    public: tuple[float, float]
    widths: tuple[float, ...]
    integer: bool

    def bounds(self, index: int) -> tuple[float, float] | tuple[int, int]:
        """The clamping interval of candidate ``index`` (0 is the narrowest)."""
        low, high = self.public
        width = self.widths[index]
        if self.mode == "upper":
            lower, upper = low, min(high, low + width)
        elif self.mode == "lower":
            lower, upper = max(low, high - width), high
        else:
            lower, upper = max(low, -width), min(high, width)
        if self.integer:
            return int(lower), int(upper)
        return float(lower), float(upper)

    def all_bounds(self) -> list[tuple[float, float] | tuple[int, int]]:
        """Every candidate interval, narrowest first."""
        return [self.bounds(i) for i in range(len(self.widths))]

    @property
    def full_width(self) -> float:
        """``W``: the width of the public bounds in this mode."""
        return self.widths[-1]


def clamp_candidates(
    public: tuple[float, float] | tuple[int, int], column_type: str
) -> ClampCandidates:
    """The candidates inside the public bounds ``public`` of a column of ``column_type``."""
    low, high = float(public[0]), float(public[1])
    mode: ClampMode
    if low >= 0:
        mode, full = "upper", high - low
    elif high <= 0:
        mode, full = "lower", high - low
    else:
        mode, full = "symmetric", max(-low, high)
    integer = column_type == "integer"
    widths: set[float] = set()
    for step in range(MAX_CLAMP_CANDIDATES):
        width = full * CLAMP_RATIO**step
        if integer:
            width = float(max(1, math.ceil(width - 1e-9)))
        if width > 0:
            widths.add(min(width, full))
    widths.add(full)
    return ClampCandidates(
        mode=mode, public=(low, high), widths=tuple(sorted(widths)), integer=integer
    )


def integer_candidates(limit: int) -> tuple[int, ...]:
    """1, 2, ..., ``limit``."""
    return tuple(range(1, max(1, limit) + 1))
