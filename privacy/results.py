"""What planning and executing a query produce: the Plan, its accuracy, the release.

Plain values, no logic beyond reading themselves: a :class:`Plan` is built by
:mod:`privacy.compile` (from public metadata only) and run by
:mod:`privacy.execute`, which returns a :class:`ReleaseResult`. A plan with
automatic bounds carries an :class:`~privacy.auto.AutoPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import opendp.prelude as dp

from privacy.amount import PrivacyAmount, PrivacyModel
from privacy.measurement import NoiseComponent
from privacy.metadata import DatasetMetadata
from privacy.query import ResolvedQuery

if TYPE_CHECKING:
    from privacy.auto import AutoPlan
    from privacy.kept import TruncationEstimate, TruncationPlan

NOISE_ONLY = "noise"
"""``accuracy.covers``: the bound covers the noise only (the value on the truncated data)."""
NOISE_AND_BIAS = "noise_and_bias"
"""``accuracy.covers``: the bound covers the difference from the value on the whole data."""


@dataclass(frozen=True)
class LevelAccuracy:
    """One level of a ``rollup`` release: every cell of that level is within
    ``error_bound`` of its exact value w.p. ≥ 1 − alpha (see :mod:`privacy.consistency`);
    with ``noise_and_bias``, ``noise_error_bound`` and ``bias_bound`` as in
    :class:`Accuracy`."""

    level: str
    error_bound: float
    noise_error_bound: float | None = None
    bias_bound: float | None = None


@dataclass(frozen=True)
class Accuracy:
    """Per-cell accuracy: |released − exact value| ≤ ``error_bound`` w.p. ≥ 1 − ``alpha``.

    ``covers`` says which exact value: :data:`NOISE_ONLY` — on the truncated,
    clamped data (OpenDP's noise only); :data:`NOISE_AND_BIAS` — on the whole
    data (noise plus a DP bound on what the contribution bounds dropped,
    ``bias_bound``; ``noise_error_bound`` is then the noise part, at the α that is
    left: the truth lies in ``[value − noise_error_bound, value +
    noise_error_bound + bias_bound]``).

    ``error_bound`` is what OpenDP's ``summarize(alpha)`` reports for the noisy
    aggregate (count, sum). For ``mean`` it is in the column's units
    (:mod:`privacy.mean_accuracy`): a plan states it only for an accuracy
    target with ``min_cell_rows`` (the bound for every cell with at least that
    many rows, ``(a_s + M·a_n)/(n − a_n)``), else None; a release states the
    largest per-cell half-width, each cell carrying its own ``[lower, upper]``.
    It is None for ``quantile``, whose error is in ranks: ``rank_error_bound``
    = r rows (:mod:`privacy.quantile_accuracy`): w.p. ≥ 1 − α the released
    candidate lies between the cell's true quantiles at ranks q·n ∓ (r + g),
    g the candidate grid's own distance. ``covers`` is ``"noise"``: truncation
    and clamping bias are not included.
    """

    alpha: float
    error_bound: float | None
    error_bound_range: tuple[float, float] | None = None
    """With automatic bounds, before the choice: the bound at the smallest and at the
    largest candidates (``error_bound`` is then the largest)."""
    covers: str = NOISE_ONLY
    """``"noise"`` (the noise only) or ``"noise_and_bias"``."""
    noise_error_bound: float | None = None
    bias_bound: float | None = None
    rank_error_bound: float | None = None
    """``quantile`` only: r, in rows of the cell (see above)."""
    levels: tuple[LevelAccuracy, ...] | None = None
    """``rollup`` only: each level's bound (child level first); ``error_bound`` is the
    largest of them."""


@dataclass(frozen=True)
class KeySelection:
    """A grouping on private keys: OpenDP released a group only where its noisy row count
    reached ``threshold``; ``delta`` is the δ of OpenDP's privacy map (ρ, δ) at that
    threshold (≤ the dataset's ``delta``), the probability bound on a key that one unit alone
    holds being released. Both as OpenDP computes them; ``columns`` are the private ones."""

    columns: tuple[str, ...]
    threshold: int
    delta: float


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`execute` released: the rows and how they were computed.

    ``mechanism``, ``noise_scale``, ``accuracy`` and ``components`` describe
    the statistic as actually compiled (with automatic bounds: at the bounds
    chosen). ``bounds_chosen`` is None for fixed bounds; ``selection`` holds what
    the selection measurements released (DP values) and the rule's scores.
    ``opendp_loss`` is the sum of OpenDP's privacy maps of every measurement
    invoked, ≤ the plan's cost.
    """

    rows: list[list[Any]]
    mechanism: str
    noise_scale: float
    accuracy: Accuracy
    components: tuple[NoiseComponent, ...]
    opendp_loss: float
    bounds_chosen: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    truncation: TruncationEstimate | None = None
    raw_rows: list[list[Any]] | None = field(default=None, repr=False)
    """``rollup`` only: the same rows with the noisy values before consistency (for tests
    and diagnostics; never part of a response)."""
    keys_selected: int | None = None
    """With private keys: how many groups OpenDP released (rows of ``rows``)."""


@dataclass(frozen=True, eq=False)
class RollupPlan:
    """A rollup's parent level: its OpenDP measurement (same input, ``d_in`` and global
    scale as the statistic's), OpenDP's ``summarize`` of it, OpenDP's map of it at
    ``d_in`` (``loss``), and the public family sizes (children per parent key, in the
    parent's key order)."""

    measurement: dp.Measurement = field(repr=False)
    components: tuple[NoiseComponent, ...]
    loss: float
    families: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Plan:
    """A compiled query: what it costs, how accurate it is, and the OpenDP measurement.

    ``cost`` is what to debit, in the budget's unit (ε for ``pure``, ρ for
    ``zcdp``); ``opendp_loss`` is OpenDP's privacy map of the measurement at
    the declared contribution bounds and is ≤ ``cost``. ``mechanism`` and
    ``noise_scale`` describe the released aggregate (for ``mean``, its sum;
    every noisy aggregate is listed in ``components``; for ``quantile`` the
    scale is in OpenDP's integer score units, which are multiplied by the
    denominator of ``q`` as a binary fraction, so q = 0.1 shows a huge scale
    with the same utility). ``epsilon_delta`` is the
    (ε, δ)-DP equivalent at the dataset's δ for zCDP plans, None for pure ones.

    With automatic bounds (``auto`` is set), ``cost`` is the TOTAL (selection
    plus statistic), ``opendp_loss`` the selection's maps plus the statistic's
    at the largest candidates, and ``measurement``, ``mechanism``,
    ``noise_scale``, ``accuracy`` and ``components`` are the statistic's at the
    largest candidates (the worst case; ``accuracy.error_bound_range`` gives
    the range): :func:`execute` reports those at the bounds it chooses.
    """

    canonical: dict[str, Any]
    model: PrivacyModel
    cost: Decimal
    opendp_loss: float
    mechanism: str
    noise_scale: float
    accuracy: Accuracy
    columns: list[str]
    epsilon_delta: tuple[float, float] | None
    bounds_used: dict[str, Any]
    measurement: dp.Measurement = field(repr=False)
    components: tuple[NoiseComponent, ...] = ()
    query: ResolvedQuery | None = field(default=None, repr=False)
    metadata: DatasetMetadata | None = field(default=None, repr=False)
    auto: AutoPlan | None = field(default=None, repr=False)
    truncation: TruncationPlan | None = field(default=None, repr=False)
    fixed_point: int | None = None
    """A float sum or mean summed in fixed point: its scale ``S`` (the measurement takes
    :func:`~privacy.measurement.measurement_input`; released sums are in units of 1/S)."""
    statistic_loss: float | None = None
    """With ``truncation``: OpenDP's map of the statistic's measurement alone (with automatic
    bounds, of the selection and the statistic at the largest candidates)."""
    """Where the bounds can drop data: the measurements estimating what they drop (their
    cost is part of ``cost``; the statistic's is ``cost − truncation.cost``)."""
    rollup: RollupPlan | None = field(default=None, repr=False)
    """``rollup`` only: the parent level (``measurement`` and ``components`` are the child
    level's; ``opendp_loss`` is both levels' maps together, rounded up)."""

    key_selection: KeySelection | None = None
    """A grouping on private keys: OpenDP's threshold and δ (the cost is ρ; see
    :class:`KeySelection`)."""

    @property
    def amount(self) -> PrivacyAmount:
        """What to debit as a privacy amount: ``cost`` of the plan's ``model``."""
        return PrivacyAmount.of(self.model, self.cost)
