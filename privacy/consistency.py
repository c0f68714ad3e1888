"""Consistent two-level releases (``rollup``) and their per-level error bounds.

Post-processing only: everything here is a fixed function of the two levels'
noisy values (OpenDP's output) and of public numbers (the noise laws OpenDP's
``summarize`` reports, the public child → parent map); it reads no data and
costs no privacy.

**Consistency (weighted least squares, Hay et al. 2010).** Per tree — a parent
cell ``(parent, other keys)`` with its ``m`` child cells ``(child, other keys)``
— OpenDP released the children ``y_i = t_i + Z_i`` and the parent ``y_p = t_p +
Z_p`` with independent zero-mean noise of variances ``σ_c²``, ``σ_p²``, and the
truths add up: ``t_p = Σ t_i`` (the parent level is computed from the same
truncated rows, its column a function of the child's). The least-squares
estimate under that constraint is, with ``S = Σ y_i`` and ``w = σ_p² / (σ_p² +
m·σ_c²)``, ``x_p = (1 − w)·y_p + w·S`` and ``x_i = y_i + (x_p − S)/m``; then
``Σ x_i = x_p`` and every ``x`` is unbiased with a variance no larger than the
raw value's (``x_p``'s is ``w·m·σ_c²`` ≤ ``σ_p²`` and ≤ ``m·σ_c²``; a child's is
``σ_c² − (1 − w)·σ_c²/m``). Variances: discrete Laplace of scale ``b``:
``2q/(1 − q)²`` with ``q = e^(−1/b)``; Laplace ``2b²``; Gaussian ``σ²``; discrete
Gaussian: ``σ²`` (an upper bound on its variance). A parent with no children (a
key of the parent column that the map does not use) has true value 0 — its cell
gets no rows, whose child key must be public — and is released as 0, the sum of
its (no) children.

**Exact sums.** The consistent children are rounded to multiples of a power of two
``g`` (:func:`grid_for`: ``2⁻¹⁰``, or coarser when the values are so large that the
sums would not be exact) and each parent is released as the sum of its rounded
children. Every partial sum of multiples of ``g`` below ``2^E`` in magnitude,
with ``E − log2(g) ≤ 52``, is exact in binary64, so ``sum(children) ==
parent`` holds bit for bit in any order. The rounding moves a child by at most
``g/2`` and a parent by at most ``m·g/2``; the bounds below include that.

**Error bound per level.** A consistent value's error ``x − t`` is a fixed
linear combination ``Σ a_j Z_j`` of the independent noises: a child's has
coefficient ``1 − (1 − w)/m`` on its own noise, ``−(1 − w)/m`` on each of its
``m − 1`` siblings' and ``(1 − w)/m`` on the parent's; the parent's has ``1 − w``
on its own and ``w`` on each child's. By Markov's inequality on ``e^(λ·X)``
(Chernoff), for every ``λ > 0``, ``P(X ≥ t) ≤ e^(−λt)·Π_j M_j(a_j λ)`` with
``M_j`` the moment generating function of ``Z_j``, and the same for ``−X``
(the laws are symmetric), so ``P(|X| ≥ t(λ)) ≤ α`` at
``t(λ) = (log(2/α) + Σ_j log M_j(a_j λ)) / λ``. The bound is ``min_λ t(λ)``,
found by a golden-section search on ``λ`` (``t`` is unimodal: ``λ·t(λ) − log(2/α)``
is convex and 0 at 0). Chernoff is loose by up to 2× for a single Laplace noise,
so where one Laplace noise dominates the combination the exact tail of that
noise is used instead and the rest bounded by its MGF (:func:`dominant_bound`);
the smaller of the two bounds is stated. The MGFs are exact: discrete Laplace
``(1 − q)² / ((1 − q·e^s)(1 − q·e^(−s)))`` for ``|s| < 1/b``; Laplace ``1/(1 −
s²b²)`` for ``|s| < 1/b``; Gaussian ``e^(s²σ²/2)``; discrete Gaussian: it is
σ²-sub-Gaussian (Canonne, Kamath, Steinke 2020, Cor. 9), so ``e^(s²σ²/2)``
bounds its MGF. A noise of a fixed-point sum is ``Z/S`` with ``Z`` on the
integers: its coefficients carry the ``1/S``. The bound depends on the cell only
through ``m``: a level's bound is the largest over the family sizes it has.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

GRID_EXPONENT = -10
"""Consistent children are rounded to multiples of ``2^GRID_EXPONENT`` (or coarser)."""
_GOLDEN = (math.sqrt(5) - 1) / 2
_SEARCH_STEPS = 200
_BISECTION_STEPS = 80


@dataclass(frozen=True)
class NoiseLaw:
    """One level's noise per cell: ``step·Z`` with ``Z`` of ``distribution`` at ``scale``
    (OpenDP's distribution name and scale in ``Z``'s units; ``step`` = 1, or 1/S for a
    fixed-point sum)."""

    distribution: str
    scale: float
    step: float = 1.0

    @property
    def discrete(self) -> bool:
        """Whether ``Z`` lives on the integers."""
        return self.distribution.startswith("Integer")

    @property
    def laplace(self) -> bool:
        """Whether ``Z`` is of the Laplace family (else Gaussian)."""
        return self.distribution.endswith("Laplace")

    def variance(self) -> float:
        """The variance of ``step·Z`` (for a discrete Gaussian an upper bound, ``σ²``)."""
        b = self.scale
        if b == 0:
            return 0.0
        if self.laplace and self.discrete:
            q = math.exp(-1.0 / b)
            return self.step**2 * 2 * q / (1 - q) ** 2
        if self.laplace:
            return self.step**2 * 2 * b * b
        return self.step**2 * b * b

    def log_mgf(self, s: float) -> float:
        """``log E[e^(s·step·Z)]`` (an upper bound for the discrete Gaussian); inf where
        it diverges."""
        u = abs(s) * self.step
        b = self.scale
        if u == 0 or b == 0:
            return 0.0
        if not self.laplace:
            return u * u * b * b / 2
        if u * b >= 1:
            return math.inf
        if self.discrete:
            q = math.exp(-1.0 / b)
            return 2 * math.log1p(-q) - math.log1p(-q * math.exp(u)) - math.log1p(-q * math.exp(-u))
        return -math.log1p(-u * u * b * b)

    def limit(self) -> float:
        """The supremum of ``|s|`` where the MGF of ``step·Z`` is finite."""
        if not self.laplace or self.scale == 0:
            return math.inf
        return 1.0 / (self.scale * self.step)


@dataclass(frozen=True)
class Term:
    """``count`` independent noises of ``law``, each with coefficient ``coefficient``."""

    law: NoiseLaw
    coefficient: float
    count: int = 1


def weight(child: NoiseLaw, parent: NoiseLaw, m: int) -> float:
    """``w = σ_p² / (σ_p² + m·σ_c²)`` (module docstring; 0 when both are noiseless)."""
    vp, vc = parent.variance(), child.variance()
    if vp + m * vc == 0:
        return 0.0
    return vp / (vp + m * vc)


def child_terms(child: NoiseLaw, parent: NoiseLaw, m: int) -> list[Term]:
    """A consistent child's error as a combination of the tree's noises."""
    share = (1 - weight(child, parent, m)) / m
    terms = [Term(child, 1 - share), Term(parent, share)]
    if m > 1:
        terms.append(Term(child, -share, m - 1))
    return terms


def parent_terms(child: NoiseLaw, parent: NoiseLaw, m: int) -> list[Term]:
    """A consistent parent's error as a combination of the tree's noises."""
    w = weight(child, parent, m)
    return [Term(parent, 1 - w), Term(child, w, m)]


def _minimize(f: Callable[[float], float], low: float, high: float) -> float:
    """The least value of a unimodal ``f`` on ``[low, high]`` (golden-section search)."""
    left = high - _GOLDEN * (high - low)
    right = low + _GOLDEN * (high - low)
    f_left, f_right = f(left), f(right)
    for _ in range(_SEARCH_STEPS):
        if f_left <= f_right:
            high, right, f_right = right, left, f_left
            left = high - _GOLDEN * (high - low)
            f_left = f(left)
        else:
            low, left, f_left = left, right, f_right
            right = low + _GOLDEN * (high - low)
            f_right = f(right)
        if high - low <= 1e-12 * high:
            break
    return min(f_left, f_right, f(low), f(high))


def _log_mgf(terms: Sequence[Term], lam: float) -> float:
    return sum(term.count * term.law.log_mgf(term.coefficient * lam) for term in terms)


def _limit(terms: Sequence[Term]) -> float:
    return min((term.law.limit() / abs(term.coefficient) for term in terms), default=math.inf)


def _live(terms: Sequence[Term]) -> list[Term]:
    return [term for term in terms if term.coefficient != 0 and term.law.scale > 0]


def chernoff_bound(terms: Sequence[Term], alpha: float) -> float:
    """The smallest ``t(λ)`` over ``λ > 0``: ``P(|Σ a_j Z_j| ≥ t) ≤ alpha`` (module docstring)."""
    live = _live(terms)
    if not live:
        return 0.0
    log_two_over_alpha = math.log(2 / alpha)
    limit = _limit(live)
    if math.isinf(limit):  # sub-Gaussian: the minimum is at λ = √(2·log(2/α)/Σa²σ²)
        spread = sum(
            term.count * (term.coefficient * term.law.step * term.law.scale) ** 2 for term in live
        )
        return math.sqrt(2 * log_two_over_alpha * spread)
    return _minimize(
        lambda lam: (log_two_over_alpha + _log_mgf(live, lam)) / lam,
        limit * 1e-9,
        limit * (1 - 1e-12),
    )


def dominant_bound(terms: Sequence[Term], alpha: float) -> float:
    """A tighter bound when one Laplace noise dominates: ``X = a₀Z₀ + R``.

    ``P(X ≥ t) ≤ E[P(a₀Z₀ ≥ t − R | R)] ≤ C·e^(−t/β)·M_R(1/β) + P(R ≥ t)`` with
    ``β = |a₀|·b₀`` and the exact tail of ``Z₀`` above 0: ``P(a₀Z₀ ≥ u) ≤ C·e^(−u/β)``
    for ``u > 0`` (``C = 1/2`` for Laplace, ``1/(1 + q)`` for the discrete Laplace,
    whose tail at ``n ≥ 1`` is ``qⁿ/(1 + q)``), ``≤ 1`` below; ``P(R ≥ t)`` by
    Chernoff at one ``λ > 1/β``. Twice that (both signs) is solved for ``t`` by bisection. Inf when
    ``M_R(1/β)`` diverges (e.g. two equal coefficients) or the noise is Gaussian.
    """
    live = _live(terms)
    if not live:
        return 0.0
    order = sorted(live, key=lambda term: -abs(term.coefficient) * term.law.scale * term.law.step)
    head = order[0]
    if not head.law.laplace or head.count != 1:
        return math.inf
    beta = abs(head.coefficient) * head.law.scale * head.law.step
    rest = order[1:]
    if _limit(rest) * beta <= 1:
        return math.inf
    q = math.exp(-1.0 / head.law.scale)
    front = math.log(1 / (1 + q) if head.law.discrete else 0.5) + _log_mgf(rest, 1 / beta)

    # P(R ≥ t) ≤ e^(−λt)·M_R(λ) at one λ above 1/β (where M_R is finite): it falls
    # faster than the main term, so a fixed λ loses nothing that matters
    lam = min(2 / beta, (1 / beta + _limit(rest)) / 2) if rest else math.inf
    rest_log_mgf = _log_mgf(rest, lam) if rest else 0.0

    def failure(t: float) -> float:
        tail = math.exp(rest_log_mgf - lam * t) if rest else 0.0
        return 2 * (math.exp(front - t / beta) + tail)

    low, high = 0.0, beta
    while failure(high) > alpha:
        low, high = high, high * 2
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        if failure(middle) > alpha:
            low = middle
        else:
            high = middle
    return high


def error_bound(terms: Sequence[Term], alpha: float) -> float:
    """``t`` with ``P(|Σ a_j Z_j| ≥ t) ≤ alpha``: the tighter of :func:`chernoff_bound`
    and :func:`dominant_bound`."""
    return min(chernoff_bound(terms, alpha), dominant_bound(terms, alpha))


@dataclass(frozen=True)
class LevelBounds:
    """Both levels' noise bounds at ``alpha`` after consistency (rounding included)."""

    child: float
    parent: float


def level_bounds(
    child: NoiseLaw, parent: NoiseLaw, families: Iterable[int], alpha: float, grid: float
) -> LevelBounds:
    """The largest per-cell noise bound of each level over the family sizes ``families``
    (childless parents, ``m = 0``, are exact), plus the grid rounding."""
    child_bound = 0.0
    parent_bound = 0.0
    for m in sorted(set(families)):
        if m <= 0:
            continue
        child_bound = max(child_bound, error_bound(child_terms(child, parent, m), alpha))
        parent_bound = max(
            parent_bound,
            error_bound(parent_terms(child, parent, m), alpha) + m * grid / 2,
        )
    return LevelBounds(child=child_bound + grid / 2, parent=parent_bound)


def grid_for(children: Iterable[float]) -> float:
    """The rounding grid: ``2^GRID_EXPONENT``, or the finest power of two ``g`` with
    ``Σ|x|/g < 2^52`` (so every partial sum of multiples of ``g`` is exact)."""
    total = math.fsum(abs(x) for x in children)
    exponent = math.frexp(total)[1] if total > 0 else 0
    return math.ldexp(1.0, max(GRID_EXPONENT, exponent - 52))


def on_grid(value: float, grid: float) -> float:
    """``value`` rounded to the nearest multiple of ``grid`` (a power of two: exact)."""
    return round(value / grid) * grid


@dataclass(frozen=True)
class Tree:
    """One parent cell's released value and its children's (raw, noisy)."""

    parent: float
    children: list[float]


def consistent(
    trees: Sequence[Tree], child: NoiseLaw, parent: NoiseLaw
) -> tuple[list[Tree], float]:
    """The consistent trees (children on the grid, parents their exact sums) and the grid."""
    estimated: list[tuple[float, list[float]]] = []
    for tree in trees:
        m = len(tree.children)
        if m == 0:
            estimated.append((0.0, []))
            continue
        total = math.fsum(tree.children)
        w = weight(child, parent, m)
        x_parent = (1 - w) * tree.parent + w * total
        shift = (x_parent - total) / m
        estimated.append((x_parent, [y + shift for y in tree.children]))
    grid = grid_for(x for _, children in estimated for x in children)
    out: list[Tree] = []
    for _, children in estimated:
        rounded = [on_grid(x, grid) for x in children]
        out.append(Tree(parent=sum(rounded, 0.0), children=rounded))
    return out, grid
