"""Planning a query with automatic bounds: the exact cost split and the selection steps.

See :mod:`privacy.auto` for the rule and the privacy argument. Everything here
uses public metadata only; OpenDP reports every loss and noise scale.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from privacy.accounting import epsilon_delta_of
from privacy.accuracy_first import check_cost_limit, mean_error_at_rows
from privacy.amount import PrivacyAmount, PrivacyModel
from privacy.auto.clamp import ClampSelection, plan_clamp_selection
from privacy.auto.contribution import ContributionSelection, plan_contribution_selection
from privacy.errors import InvalidQuery
from privacy.metadata import AUTO, DatasetMetadata
from privacy.query import AccuracyTarget, ResolvedQuery, explicit_cost
from privacy.results import Plan

CompileFixed = Callable[[ResolvedQuery, DatasetMetadata, PrivacyModel, float], Plan]
"""Compiles (and caches) the plan of a query at fixed bounds: ``privacy.compile.cached_plan``."""


@dataclass(frozen=True, eq=False)
class AutoPlan:
    """The automatic part of a plan: the cost split, the candidates and the selection steps.

    ``selection_cost`` + ``statistic_cost`` = the plan's cost exactly; the
    selection cost is split between ``contribution`` and ``clamp`` (those
    present). ``candidates`` is the JSON-able list of public candidates.
    ``noise_scale_range`` / the plan's ``accuracy.error_bound_range`` are the
    statistic's noise at the smallest and at the largest candidates, at
    ``statistic_cost``. See :mod:`privacy.auto` for the rule and the privacy
    argument.
    """

    share: Decimal
    selection_cost: Decimal
    statistic_cost: Decimal
    contribution: ContributionSelection | None
    clamp: ClampSelection | None
    candidates: dict[str, Any]
    noise_scale_range: tuple[float, float]

    def selection_steps(self) -> list[dict[str, Any]]:
        """The selection measurements (what they choose, their cost, mechanism, noise scale).

        The clamp step's noise scale depends on the contribution bounds chosen
        first; it is shown at the largest candidates.
        """
        steps: list[dict[str, Any]] = []
        if self.contribution is not None:
            solved = self.contribution.solved
            steps.append(
                {
                    "chooses": "contribution_bounds",
                    "cost": self.contribution.cost,
                    "mechanism": solved.mechanism,
                    "noise_scale": solved.scale,
                    "opendp_privacy_loss": solved.loss,
                }
            )
        if self.clamp is not None:
            widest = self.clamp.solved_at_most_rows()
            steps.append(
                {
                    "chooses": "clamp",
                    "cost": self.clamp.cost,
                    "mechanism": widest.mechanism,
                    "noise_scale": widest.scale,
                    "opendp_privacy_loss": widest.loss,
                }
            )
        return steps


def split_cost(
    cost: PrivacyAmount, share: Decimal, parts: int
) -> tuple[list[PrivacyAmount], PrivacyAmount]:
    """``(selection pieces, statistic cost)``: the pieces sum to ``floor(share · cost)``
    (to 12 decimals), the statistic gets the exact rest, so everything sums to ``cost``.

    Raises :class:`InvalidQuery` when a piece would be below 10⁻¹².
    """
    try:
        return cost.split(share, parts)
    except ValueError:
        raise InvalidQuery(
            f"the cost {cost.value} is too small to spend a share of it "
            "on choosing automatic bounds"
        ) from None


def accuracy_first_total(
    needed: PrivacyAmount, target: AccuracyTarget, share: Decimal, parts: int
) -> tuple[PrivacyAmount, list[PrivacyAmount], PrivacyAmount]:
    """``(total, selection pieces, statistic cost)`` for an accuracy target whose statistic
    needs ``needed`` at the largest candidates: ``needed / (1 − share)`` rounded up to 4
    significant digits, stepped up until the statistic's part is at least ``needed``."""
    total = PrivacyAmount(needed.model, needed.value / (1 - share)).rounded_up()
    pieces, statistic_cost = split_cost(total, share, parts)
    while statistic_cost < needed:  # not expected: total·(1 − share) ≥ needed
        total = total.step_up()
        pieces, statistic_cost = split_cost(total, share, parts)
    check_cost_limit(target, total)
    return total, pieces, statistic_cost


def compile_auto(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    model: PrivacyModel,
    alpha: float,
    *,
    compile_fixed: CompileFixed,
) -> Plan:
    """Plan a query with automatic bounds (see :mod:`privacy.auto`), from public metadata.

    Explicit cost ``C``: the selection steps get ``floor(share · C)`` between them,
    the statistic the exact rest. Accuracy target: the statistic's cost is the
    smallest at which the target holds at the LARGEST candidates (hence, noise
    growing with the bounds, at every candidate), and the total is that divided
    by ``1 − share``, rounded up to 4 significant digits (the selection gets the
    rest). The plan's ``measurement``, ``noise_scale`` and ``accuracy`` are the
    statistic's at the largest candidates, the worst case; the bounds actually
    used are chosen by :func:`~privacy.auto.selection.run_selection` at release.
    ``compile_fixed`` compiles (and caches) the statistic at fixed bounds.
    """
    auto = query.auto
    assert auto is not None
    k_max, c_max = query.max_partitions_contributed, query.max_contributions_per_partition
    widest = query.bounds
    parts = (auto.partitions is not None or auto.contributions is not None) + (
        auto.clamp is not None
    )
    privacy = query.privacy
    if isinstance(privacy, AccuracyTarget):
        alpha = privacy.alpha
        needed = compile_fixed(
            query.with_bounds(k_max, c_max, widest, privacy), metadata, model, alpha
        ).amount
        total, pieces, statistic_cost = accuracy_first_total(needed, privacy, auto.share, parts)
    else:
        total = privacy.amount()
        pieces, statistic_cost = split_cost(total, auto.share, parts)
    statistic_privacy = explicit_cost(statistic_cost)
    worst = compile_fixed(
        query.with_bounds(k_max, c_max, widest, statistic_privacy), metadata, model, alpha
    )
    smallest = query.with_bounds(
        auto.partitions[0] if auto.partitions is not None else k_max,
        auto.contributions[0] if auto.contributions is not None else c_max,
        auto.clamp.bounds(0) if auto.clamp is not None else widest,
        statistic_privacy,
    )
    best = compile_fixed(smallest, metadata, model, alpha)
    worst_error, best_error = worst.accuracy.error_bound, best.accuracy.error_bound
    if isinstance(privacy, AccuracyTarget):
        if query.statistic == "mean":  # the target's bound at min_cell_rows (accuracy_first)
            worst_error = mean_error_at_rows(worst.query or query, worst.components, privacy)
            best_error = mean_error_at_rows(best.query or smallest, best.components, privacy)
        if not (worst_error is not None and worst_error <= privacy.max_error):
            raise InvalidQuery(f"could not find a cost meeting max_error={privacy.max_error}")
    contribution = (
        plan_contribution_selection(query, metadata, pieces[0], statistic_cost)
        if auto.partitions is not None or auto.contributions is not None
        else None
    )
    clamp = (
        plan_clamp_selection(query, metadata, pieces[-1], statistic_cost)
        if auto.clamp is not None
        else None
    )
    selection_loss = (contribution.solved.loss if contribution is not None else 0.0) + (
        clamp.for_rows(query.unit_rows(k_max, c_max)).loss if clamp is not None else 0.0
    )
    if not Decimal(selection_loss) + Decimal(worst.opendp_loss) <= total.value:
        raise InvalidQuery("OpenDP reports a privacy loss above the cost")
    candidates: dict[str, Any] = {}
    if auto.partitions is not None:
        candidates["max_partitions_contributed"] = list(auto.partitions)
    if auto.contributions is not None:
        candidates["max_contributions_per_partition"] = list(auto.contributions)
    if auto.clamp is not None:
        candidates["clamp"] = [list(b) for b in auto.clamp.all_bounds()]
    ranges = (best_error, worst_error)
    error_range = (
        (ranges[0], ranges[1]) if ranges[0] is not None and ranges[1] is not None else None
    )
    bounds_used = copy.deepcopy(worst.bounds_used)
    bounds_used.update(
        {
            "max_partitions_contributed": AUTO if auto.partitions is not None else k_max,
            "max_contributions_per_partition": AUTO if auto.contributions is not None else c_max,
            "clamp": AUTO if auto.clamp is not None else bounds_used["clamp"],
            "candidates": candidates,
        }
    )
    return Plan(
        canonical=query.canonical(),
        model=model,
        cost=total.value,
        opendp_loss=selection_loss + worst.opendp_loss,
        mechanism=worst.mechanism,
        noise_scale=worst.noise_scale,
        accuracy=replace(worst.accuracy, error_bound=worst_error, error_bound_range=error_range),
        columns=list(worst.columns),
        epsilon_delta=epsilon_delta_of(total, metadata.delta),
        bounds_used=bounds_used,
        measurement=worst.measurement,
        fixed_point=worst.fixed_point,
        components=worst.components,
        query=query,
        metadata=metadata,
        auto=AutoPlan(
            share=auto.share,
            selection_cost=(total - statistic_cost).value,
            statistic_cost=statistic_cost.value,
            contribution=contribution,
            clamp=clamp,
            candidates=candidates,
            noise_scale_range=(best.noise_scale, worst.noise_scale),
        ),
    )
