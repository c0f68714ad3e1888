"""Running the selection at release: DP histograms, then the bounds chosen by post-processing.

See :mod:`privacy.auto` for the rule and the privacy argument. The selection
measurements were compiled by :func:`~privacy.auto.planning.compile_auto`;
here they are invoked once each, on the filtered frame (contribution
profile) and on the frame truncated at the chosen (k, c) (clamp bins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from privacy.auto.planning import AutoPlan
from privacy.measurement import VALUE_COLUMN
from privacy.metadata import DatasetMetadata
from privacy.query import ResolvedQuery
from privacy.truncation import (
    matching_counts,
    truncate_contributions,
    unit_group_counts,
    unit_profile,
)


@dataclass(frozen=True, eq=False)
class Selection:
    """What the selection chose and released, and the frame the statistic takes.

    ``truncated`` is ``T_{k,c}(F(D))`` at the chosen (k, c) (the rows passing
    the mask, truncated per unit); ``losses`` are OpenDP's privacy maps of the
    selection measurements invoked; ``record`` what they released (DP values)
    and the rule's scores, per step.
    """

    k: int
    c: int
    clamp: tuple[float, float] | tuple[int, int] | None
    truncated: pl.DataFrame
    losses: list[float]
    record: dict[str, Any]
    counts: pl.LazyFrame | None = None
    """The per-(unit, group) matching-row counts the selection computed (one data pass),
    when it did: shared with the estimate of what the bounds drop."""

    def bounds_chosen(self) -> dict[str, Any]:
        """The bounds the statistic is released at, as the release reports them."""
        return {
            "max_partitions_contributed": self.k,
            "max_contributions_per_partition": self.c,
            "clamp": list(self.clamp) if self.clamp else None,
        }


def run_selection(
    auto: AutoPlan,
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    frame: pl.LazyFrame,
    mask: str,
) -> Selection:
    """Invoke the selection measurements of ``auto`` on ``frame`` and choose the bounds.

    ``frame`` holds every row with the unit, group and value columns and the
    Boolean ``mask`` of the rows the query looks at (``F``). Privacy unit: one
    ``metadata.privacy_unit``. The contribution histogram sees one profile row
    per unit (with ``contribution_bounds_per``: at most D, one per value of
    those columns; its OpenDP map at that many rows per unit is ≤ its cost);
    the clamp histogram sees the rows truncated at the chosen (k, c), at most
    ``k·c`` per unit (``k·c·D``; its map there is ≤ its cost). The choices are post-processing of
    those releases and public candidates. The per-(unit, group) row counts are
    computed once and shared by the profile and the truncation (one data pass).
    """
    unit, by = metadata.privacy_unit, list(query.group_by)
    k, c = query.max_partitions_contributed, query.max_contributions_per_partition
    clamp_bounds = query.bounds
    losses: list[float] = []
    record: dict[str, Any] = {}
    counts: pl.LazyFrame | None = None
    contribution = auto.contribution
    if contribution is not None:
        if query.column is not None:  # read once, then profile and truncate
            frame = frame.collect().lazy()
        counts = (
            unit_group_counts(frame, unit=unit, by=by, mask=mask).collect(engine="streaming").lazy()
        )
        profile = unit_profile(
            matching_counts(counts),
            unit=unit,
            by=by,
            max_groups=contribution.fixed_partitions,
            group_limit=contribution.group_limit,
            row_limit=contribution.row_limit,
            groups_column=contribution.groups_column,
            rows_column=contribution.rows_column,
            per=query.bounds_per,
        )
        released = contribution.solved.measurement(contribution.binned(profile)).collect()
        losses.append(contribution.solved.loss)
        chosen = contribution.choose(released)
        k, c = chosen.k, chosen.c
        record["contribution_bounds"] = {
            "columns": [
                name
                for name in (contribution.groups_column, contribution.rows_column)
                if name is not None
            ],
            "histogram": chosen.histogram,
            "scores": chosen.scores,
            "mechanism": contribution.solved.mechanism,
            "noise_scale": contribution.solved.scale,
            "opendp_privacy_loss": contribution.solved.loss,
        }
    truncated = truncate_contributions(
        frame,
        unit=unit,
        by=by,
        max_groups=k,
        max_rows_per_group=c,
        counts=counts,
        mask=mask,
        per=query.bounds_per,
    ).collect()
    clamp = auto.clamp
    if clamp is not None:
        solved = clamp.for_rows(query.unit_rows(k, c))
        bins = truncated.lazy().select(clamp.bin_expression(VALUE_COLUMN))
        released = solved.measurement(bins).collect()
        losses.append(solved.loss)
        clamp_choice = clamp.choose(released, k, c)
        clamp_bounds = clamp_choice.bounds
        record["clamp"] = {
            "candidates": [list(b) for b in clamp.candidates.all_bounds()],
            "histogram": clamp_choice.histogram,
            "scores": clamp_choice.scores,
            "mechanism": solved.mechanism,
            "noise_scale": solved.scale,
            "opendp_privacy_loss": solved.loss,
        }
    return Selection(
        k=k,
        c=c,
        clamp=clamp_bounds,
        truncated=truncated,
        losses=losses,
        record=record,
        counts=counts,
    )
