"""The rank error of a DP quantile: how far in rows the released candidate can be.

Read from OpenDP 0.16's source (``rust/src/transformations/quantile_score_candidates/mod.rs``,
``.../make_stable_expr/expr_discrete_quantile_score/mod.rs``,
``rust/src/measurements/noisy_top_k/mod.rs``, ``rust/src/polars/accuracy/mod.rs``):

- **The score.** For a cell with values ``x_1..x_n`` (truncated, clamped) and
  candidate ``c``, with ``lt = #(x < c)``, ``gt = #(x > c)`` and ``q = num/den``
  (:func:`score_fraction`: ``q`` as an exact binary fraction when its
  denominator is below ``floor((2^64 − 1) / max_rows)``, else that denominator
  and ``num = round(q·den)``), OpenDP scores
  ``score(c) = |(den − num)·lt − num·gt| = den · |f(c)|`` with
  ``f(c) = (1 − q')·lt − q'·gt = lt + q'·eq − q'·n`` (``q' = num/den``,
  ``eq = #(x = c)``). Counts are capped at ``max_rows``, which ``n`` never
  exceeds (OpenDP's margin). Lower is better; ``f`` is non-decreasing in ``c``.
- **The selection.** The candidate is chosen by OpenDP's noisy min over the
  scores (``ExponentialMin``: permute-and-flip under pure DP; ``GumbelMin``:
  the exponential mechanism under zCDP), at the ``scale`` ``summarize``
  reports (in score units). Both accept candidate ``c`` with probability
  ``exp(−(score(c) − best)/scale)`` when visited (``permute_and_flip``), so
  ``P(c released) ≤ exp(−gap_c / scale)``. By a union bound over at most
  ``m − 1`` candidates with ``gap ≥ d``: ``P(gap ≥ d) ≤ (m − 1)·exp(−d/scale)``,
  which is ``α`` at ``d = scale · ln((m − 1)/α)`` (``0`` for one candidate).
- **In rows.** ``d`` score units are ``d / den`` rows of ``f``. Since
  ``|q − q'| · n ≤ |q − q'| · max_rows``, the rank error in rows is
  ``r = d / den + |q − q'| · max_rows``: w.p. ≥ 1 − α,
  ``|lt(ĉ) + q·eq(ĉ) − q·n| < g + r``, where ``g = min_c |f(c)|`` is the best
  candidate's own distance (the **grid effect**: the released value is always
  a candidate; ``g`` is at most half the rows in ``[c_k, c_k+1]``, the two
  candidates around the true quantile, since ``f`` crosses 0 between them).
- **As quantiles.** ``|f(ĉ)| < t`` gives ``#(x < ĉ) < q·n + t`` and
  ``#(x ≤ ĉ) > q·n − t``, i.e. ``x_(⌈q·n − t⌉) ≤ ĉ ≤ x_(⌈q·n + t⌉)`` for the
  order statistics of the cell (out-of-range ranks meaning the clamp bounds).
  So the released value lies between the true quantiles at ranks
  ``q·n ∓ (r + g)``; ``g = 0`` exactly when some candidate hits the quantile's
  rank, e.g. integer columns with every integer a candidate and no heavy ties.

``r`` is in rows because ``n`` is private; as a level it is ``r / n``. Nothing
here reads data or spends budget: it is arithmetic on OpenDP's public scale.
"""

from __future__ import annotations

import math
from fractions import Fraction

_U64_MAX = 2**64 - 1


def score_fraction(q: float, max_rows: int) -> tuple[int, int]:
    """``(num, den)`` as OpenDP's ``score_candidates_constants`` chooses them for ``q``.

    ``den`` is the denominator of ``q`` as an exact binary fraction when it is
    below ``floor((2^64 − 1) / max_rows)``; otherwise that floor, with
    ``num = round(q · den)``.
    """
    exact = Fraction(q)
    approx_den = _U64_MAX // max_rows
    if exact.denominator < approx_den:
        return exact.numerator, exact.denominator
    return round(q * float(approx_den)), approx_den


def rank_error_rows(scale: float, candidates: int, alpha: float, q: float, max_rows: int) -> float:
    """``r`` in rows: w.p. ≥ 1 − ``alpha`` the released candidate's rank distance is < best + r.

    ``r = scale · ln((m − 1)/α) / den + |q − num/den| · max_rows`` with
    ``m = candidates`` and ``(num, den)`` of :func:`score_fraction` (module
    docstring for the derivation and the grid term it leaves out).
    """
    num, den = score_fraction(q, max_rows)
    gap = scale * math.log((candidates - 1) / alpha) if candidates > 1 else 0.0
    gap = max(gap, 0.0)
    return gap / den + float(abs(Fraction(q) - Fraction(num, den)) * max_rows)
